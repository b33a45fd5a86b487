// The model-independent logic in plain Kotlin/JVM (no Android imports), so it runs on any JVM:
// `./gradlew :core:test` here, or android_demo/core/run_tests.sh with Debian's kotlinc (CI).
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.kotlin.jvm)
}

java {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

dependencies {
    testImplementation(libs.junit)
}
