// Gradle build for Android Studio users. NOT run in this repository (no Gradle or Android SDK here): the SDK is
// built and tested on the JVM by build.sh. Open apps/android in Android Studio to use it.
pluginManagement {
    repositories { google(); mavenCentral(); gradlePluginPortal() }
}
dependencyResolutionManagement {
    repositories { google(); mavenCentral() }
}
rootProject.name = "spartan-edge-android"
include(":sdk", ":sample")
