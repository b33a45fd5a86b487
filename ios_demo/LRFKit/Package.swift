// swift-tools-version:6.0
// LRFKit: the iOS/macOS side of LRF Mobile. A mirror of the tested Kotlin core
// (android_demo/core) plus a Core ML engine. `swift test` runs the golden-vector tests, in the
// Swift 6 language mode (complete concurrency checking).
import PackageDescription

let package = Package(
    name: "LRFKit",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "LRFKit", targets: ["LRFKit"]),
    ],
    targets: [
        .target(name: "LRFKit"),
        .testTarget(
            name: "LRFKitTests",
            dependencies: ["LRFKit"],
            resources: [.copy("Resources")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
