pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "LRFDemo"
include(":core")   // plain Kotlin/JVM: PRNG, manifest, scheduler, pixels, sampling loop (tested on any JVM)
include(":app")    // the Android app: Compose UI + ONNX Runtime engine
