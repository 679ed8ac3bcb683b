// One-screen sample app over the SDK's public API. NOT built here (no Android SDK in this repository's CI).
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.spartanedge.sample"
    compileSdk = 35
    defaultConfig {
        applicationId = "org.spartanedge.sample"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
        // The demo server's URL; 10.0.2.2 is the host machine from the Android emulator.
        buildConfigField("String", "SERVER_URL", "\"http://10.0.2.2:8000\"")
    }
    buildFeatures { buildConfig = true }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    implementation(project(":sdk"))
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
    implementation("androidx.lifecycle:lifecycle-runtime-ktx:2.8.7")
}
