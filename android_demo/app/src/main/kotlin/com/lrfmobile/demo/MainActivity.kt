package com.lrfmobile.demo

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.compose.setContent
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.compose.foundation.Image
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Box
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.size
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.text.KeyboardOptions
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.DropdownMenu
import androidx.compose.material3.DropdownMenuItem
import androidx.compose.material3.FilterChip
import androidx.compose.material3.LinearProgressIndicator
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Slider
import androidx.compose.material3.Surface
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.graphics.FilterQuality
import androidx.compose.ui.graphics.asImageBitmap
import androidx.compose.ui.text.font.FontFamily
import androidx.compose.ui.text.input.KeyboardType
import androidx.compose.ui.unit.dp
import androidx.lifecycle.viewmodel.compose.viewModel
import com.lrfmobile.core.Mode

class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent {
            MaterialTheme {
                Surface(Modifier.fillMaxSize()) { DemoScreen(viewModel()) }
            }
        }
    }
}

/** Maximum steps offered by the slider; the sampler itself accepts any N >= 1. */
private const val MAX_STEPS = 100

@Composable
fun DemoScreen(vm: DemoViewModel) {
    Column(
        Modifier.fillMaxSize().verticalScroll(rememberScrollState()).padding(16.dp),
        verticalArrangement = Arrangement.spacedBy(12.dp)
    ) {
        Text("LatentRecurrentFlow", style = MaterialTheme.typography.headlineSmall)
        Text(vm.status, style = MaterialTheme.typography.bodySmall)
        vm.error?.let { Text(it, color = MaterialTheme.colorScheme.error) }
        val manifest = vm.manifest ?: return@Column

        ClassPicker(manifest.classes, vm.classIndex, enabled = !vm.running) { vm.classIndex = it }
        Row(verticalAlignment = Alignment.CenterVertically, horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            OutlinedTextField(
                value = vm.seedText, onValueChange = { vm.seedText = it.trim() }, label = { Text("Seed (0 .. 2^64-1)") },
                singleLine = true, enabled = !vm.running, modifier = Modifier.weight(1f),
                keyboardOptions = KeyboardOptions(keyboardType = KeyboardType.Number)
            )
            OutlinedButton(onClick = vm::randomSeed, enabled = !vm.running) { Text("Random") }
        }
        PhotoSource(vm, hasEncoder = manifest.encoder != null)
        Text("Steps: ${vm.steps}")
        Slider(
            value = vm.steps.toFloat(), onValueChange = { vm.steps = it.toInt().coerceIn(1, MAX_STEPS) },
            valueRange = 1f..MAX_STEPS.toFloat(), steps = MAX_STEPS - 2, enabled = !vm.running
        )
        Text(String.format("Guidance: %.1f", vm.guidance))
        Slider(
            value = vm.guidance, onValueChange = { vm.guidance = Math.round(it * 10) / 10f },
            valueRange = 0f..10f, enabled = !vm.running
        )
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            for (m in Mode.values()) {
                FilterChip(
                    selected = vm.mode == m, onClick = { vm.mode = m },
                    enabled = !vm.running && vm.modeAvailable(m),
                    label = { Text(m.name.lowercase()) }
                )
            }
        }
        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            Button(onClick = vm::generate, enabled = !vm.running) { Text(if (vm.photo == null) "Generate" else "Edit photo") }
            OutlinedButton(onClick = vm::cancel, enabled = vm.running) { Text("Cancel") }
            OutlinedButton(onClick = vm::checkGoldenImage, enabled = !vm.running) { Text("Golden test") }
        }
        LinearProgressIndicator(progress = { vm.progress }, modifier = Modifier.fillMaxWidth())
        vm.image?.let {
            // 32x32 output: scale up with nearest-neighbour so pixels stay crisp
            Image(
                bitmap = it.asImageBitmap(), contentDescription = "generated image",
                filterQuality = FilterQuality.None, modifier = Modifier.size(256.dp)
            )
        }
        vm.timings?.let { Text(it, style = MaterialTheme.typography.bodySmall) }
        vm.goldenReport?.let { Text(it, style = MaterialTheme.typography.bodySmall, fontFamily = FontFamily.Monospace) }
    }
}

/** "Start from a photo": the system photo picker (no storage permission), then a strength slider. */
@Composable
private fun PhotoSource(vm: DemoViewModel, hasEncoder: Boolean) {
    val picker = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia()) { uri ->
        if (uri != null) vm.setPhoto(uri)
    }
    Row(verticalAlignment = Alignment.CenterVertically, horizontalArrangement = Arrangement.spacedBy(8.dp)) {
        OutlinedButton(
            onClick = { picker.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)) },
            enabled = !vm.running && hasEncoder
        ) { Text(if (hasEncoder) "Start from a photo" else "Editing needs a bundle with an encoder") }
        if (vm.photo != null) OutlinedButton(onClick = vm::clearPhoto, enabled = !vm.running) { Text("Clear") }
    }
    val photo = vm.photo ?: return
    Row(verticalAlignment = Alignment.CenterVertically, horizontalArrangement = Arrangement.spacedBy(12.dp)) {
        Image(bitmap = photo.asImageBitmap(), contentDescription = "input photo", filterQuality = FilterQuality.None,
            modifier = Modifier.size(96.dp))
        Column(Modifier.weight(1f)) {
            // 0 returns the photo (encode + decode), 1 ignores it (plain generation)
            Text(String.format("Strength: %.2f (0 keeps the photo, 1 ignores it)", vm.strength))
            Slider(value = vm.strength, onValueChange = { vm.strength = Math.round(it * 20) / 20f },
                valueRange = 0f..1f, steps = 19, enabled = !vm.running)
        }
    }
}

@Composable
private fun ClassPicker(classes: List<String>, selected: Int, enabled: Boolean, onSelect: (Int) -> Unit) {
    var open by remember { mutableStateOf(false) }
    Box {
        OutlinedButton(onClick = { open = true }, enabled = enabled) { Text("Class: ${classes[selected]}") }
        DropdownMenu(expanded = open, onDismissRequest = { open = false }) {
            classes.forEachIndexed { i, name ->
                DropdownMenuItem(text = { Text("$i  $name") }, onClick = { onSelect(i); open = false })
            }
        }
    }
}
