import LRFKit
import PhotosUI
import SwiftUI

/// Maximum steps offered by the slider; the sampler itself accepts any N >= 1.
private let maxSteps = 100

struct ContentView: View {
    @ObservedObject var model: DemoModel

    var body: some View {
        NavigationStack {
            Form {
                Section {
                    Text(model.status).font(.footnote)
                    if let e = model.error { Text(e).foregroundColor(.red).font(.footnote) }
                }
                if let m = model.manifest {
                    Section("Inputs") {
                        Picker("Class", selection: $model.classIndex) {
                            ForEach(Array(m.classes.enumerated()), id: \.offset) { i, name in Text("\(i)  \(name)").tag(i) }
                        }
                        HStack {
                            TextField("Seed (0 ... 2^64-1)", text: $model.seedText).keyboardType(.numberPad)
                            Button("Random", action: model.randomSeed)
                        }
                        Stepper("Steps: \(model.steps)", value: $model.steps, in: 1...maxSteps)
                        VStack(alignment: .leading) {
                            Text(String(format: "Guidance: %.1f", model.guidance))
                            Slider(value: $model.guidance, in: 0...10, step: 0.5)
                        }
                        Picker("Mode", selection: $model.mode) {
                            ForEach(Mode.allCases, id: \.self) { mode in
                                Text(mode.rawValue).tag(mode)
                            }
                        }
                        .pickerStyle(.segmented)
                    }
                    .disabled(model.running)
                    Section("Start from a photo") {
                        if m.encoderGraph == nil {
                            Text("This bundle has no encoder graph, so it cannot edit photos").font(.footnote)
                        } else {
                            HStack {
                                PhotosPicker(selection: $model.photoItem, matching: .images) {
                                    Label(model.photo == nil ? "Choose a photo" : "Choose another", systemImage: "photo")
                                }
                                if let p = model.photo {
                                    Spacer()
                                    Image(decorative: p, scale: 1).interpolation(.none).resizable().frame(width: 64, height: 64)
                                    Button("Clear", action: model.clearPhoto)
                                }
                            }
                            .buttonStyle(.borderless)
                            if model.photo != nil {
                                VStack(alignment: .leading) {
                                    // 0 returns the photo (encode + decode), 1 ignores it (plain generation)
                                    Text(String(format: "Strength: %.2f (0 keeps the photo, 1 ignores it)", model.strength))
                                    Slider(value: $model.strength, in: 0...1, step: 0.05)
                                }
                            }
                        }
                    }
                    .disabled(model.running)
                    .onChange(of: model.photoItem) { item in model.loadPhoto(item) }
                    Section {
                        HStack {
                            Button(model.photo == nil ? "Generate" : "Edit photo", action: model.generate).disabled(model.running)
                            Spacer()
                            Button("Cancel", role: .cancel, action: model.cancel).disabled(!model.running)
                            Spacer()
                            Button("Golden test", action: model.checkGoldenImage).disabled(model.running)
                        }
                        .buttonStyle(.borderless)
                        ProgressView(value: model.progress)
                    }
                    if let cg = model.image {
                        Section("Image") {
                            // 32x32 output: scale up with nearest-neighbour so pixels stay crisp
                            Image(decorative: cg, scale: 1).interpolation(.none).resizable()
                                .frame(width: 256, height: 256)
                            if let t = model.timings { Text(t).font(.footnote) }
                        }
                    }
                    if let g = model.goldenReport {
                        Section("Self-test") { Text(g).font(.system(.footnote, design: .monospaced)) }
                    }
                }
            }
            .navigationTitle("LatentRecurrentFlow")
        }
    }
}
