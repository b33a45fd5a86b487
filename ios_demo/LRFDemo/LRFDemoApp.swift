import SwiftUI

@main
struct LRFDemoApp: App {
    @StateObject private var model = DemoModel()

    var body: some Scene {
        WindowGroup {
            ContentView(model: model)
        }
    }
}
