// The SDK as an Android library (AAR). NOT run here: build.sh compiles the same sources with kotlinc for the JVM.
// org.json is part of Android, so the SDK has no dependency besides the Kotlin standard library.
//
// Native code: src/main/kotlin/org/spartanedge/NativeEngine.kt loads libspartan_edge_jni.so, built from
// ../jni/CMakeLists.txt by externalNativeBuild. It links libspartan_edge.so (apps/native) built for each ABI against
// ExecuTorch built for Android; pass its path per ABI with -PspartanEdgeNativeLibDir=<dir>/<abi>/ (see
// apps/android/README.md), and put both .so files in jniLibs so the APK carries them.
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

val nativeLibDir = (findProperty("spartanEdgeNativeLibDir") as String?) ?: "${rootDir}/../native/build-android"

android {
    namespace = "org.spartanedge"
    compileSdk = 35
    defaultConfig {
        minSdk = 26
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
        externalNativeBuild {
            cmake {
                arguments += listOf("-DSPARTAN_EDGE_NATIVE_LIB=$nativeLibDir/\${ANDROID_ABI}/libspartan_edge.so")
            }
        }
    }
    externalNativeBuild {
        cmake { path = file("../jni/CMakeLists.txt") }
    }
    sourceSets["main"].jniLibs.srcDir(nativeLibDir)
    sourceSets["main"].java.srcDirs("src/main/kotlin", "src/android/kotlin")  // + Android-only helpers
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
    // The JUnit tests in src/test need a live server and the host JNI library: run them with ../build.sh test.
}

dependencies {
    implementation("androidx.work:work-runtime-ktx:2.10.0")
    testImplementation("org.junit.jupiter:junit-jupiter:5.9.2")
    testImplementation(kotlin("test"))
}
