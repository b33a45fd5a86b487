// swift-tools-version:5.9
// LRFKit: the iOS/macOS side of LRF Mobile. A line-by-line mirror of the tested Kotlin core
// (android_demo/core) plus a Core ML engine. `swift test` runs the golden-vector tests.
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
    ]
)
