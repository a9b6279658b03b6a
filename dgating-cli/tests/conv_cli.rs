//! Conv nets through the same commands as MLPs: train (width, augmentation, per-channel
//! normalization), prune, eval and predict on a tiny IDX image directory; clear errors for
//! data that are not images of a supported size, images of another size or channel count than
//! the model's, exports whose description does not match their tensors, and IDX and CIFAR
//! files that are corrupt.

use std::process::Command;

mod common;
use common::write_images;

fn dgating(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dgating")).args(args).output().expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_conv_net_trains_prunes_evaluates_and_predicts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imgs");
    std::fs::create_dir(&data).unwrap();
    write_images(&data, "train", 96);
    write_images(&data, "t10k", 32);
    let (run, out) = (dir.path().join("run"), dir.path().join("compact"));
    let (data_s, run_s, out_s) = (data.to_str().unwrap(), run.to_str().unwrap(), out.to_str().unwrap());
    let (code, stdout, stderr) = dgating(&[
        "train",
        "--model",
        "vgg11",
        "--width",
        "0.0625",
        "--data",
        data_s,
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--lambda",
        "0.01",
        "--normalize",
        "--hflip",
        "--crop-padding",
        "2",
        "--out",
        run_s,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("epoch   2/2"), "{stdout}");
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"]["type"], "conv_net");
    assert_eq!(config["model_name"], "vgg11@0.0625");
    assert_eq!(config["train"]["augment"]["crop_padding"], 2);
    let mean = config["standardizer"]["mean"].as_array().unwrap();
    assert_eq!(mean.len(), 784);
    assert_eq!(mean[0], mean[783], "one mean per channel");

    let (code, stdout, stderr) = dgating(&["prune", run_s, "--out", out_s]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("kept features: all 784") && stdout.contains("max rel"), "{stdout}");
    let (code, stdout, stderr) = dgating(&["eval", out_s]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("accuracy"), "{stdout}");
    let (code, stdout, stderr) = dgating(&["predict", out_s, "--data", data_s]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 97, "a header and one line per image: {stdout}");
    let (code, _, stderr) = dgating(&["predict", run_s, "--data", data_s]);
    assert_eq!(code, 0, "{stderr}");

    // Images of another size and channel count (CIFAR's 3x32x32 for this 1x28x28 model) are
    // named as such, for the run and for its export.
    let cifar = dir.path().join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    let batch: Vec<u8> = (0..4u8)
        .flat_map(|i| std::iter::once(i).chain((0..3072u32).map(move |k| ((k + u32::from(i)) % 251) as u8)))
        .collect();
    std::fs::write(cifar.join("data_batch_1.bin"), &batch).unwrap();
    std::fs::write(cifar.join("test_batch.bin"), &batch).unwrap();
    for model in [out_s, run_s] {
        for cmd in ["predict", "eval"] {
            let (code, _, stderr) = dgating(&[cmd, model, "--data", cifar.to_str().unwrap()]);
            assert_eq!(code, 1, "{cmd} {model}: {stderr}");
            assert!(
                stderr.contains("(3x32x32)") && stderr.contains("(1x28x28)") && stderr.contains("channel count"),
                "{cmd} {model}: {stderr}"
            );
        }
    }

    // An export whose description no longer matches its tensors (a conv widened by hand) or
    // cannot be built (a kernel larger than its map) is refused, naming the tensor or layer.
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in std::fs::read_dir(&out).unwrap() {
        let f = f.unwrap();
        if f.path().is_file() {
            std::fs::copy(f.path(), broken.join(f.file_name())).unwrap();
        }
    }
    let cfg_path = broken.join("config.json");
    let original: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = original.clone();
        let layers = c["architecture"]["layers"].as_array_mut().expect("a conv net's layers");
        f(layers.iter_mut().rev().find(|l| l["kind"] == "conv").expect("a conv layer"));
        std::fs::write(&cfg_path, serde_json::to_vec(&c).unwrap()).unwrap();
        let (code, _, stderr) = dgating(&["eval", broken.to_str().unwrap()]);
        assert_eq!(code, 1, "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    };
    let stderr = edit(&|l| l["out"] = (l["out"].as_u64().unwrap() + 1).into());
    assert!(stderr.contains("config.json") && stderr.contains("convs.7") && stderr.contains("size 33"), "{stderr}");
    let stderr = edit(&|l| {
        l["kernel"] = 9.into();
        l["padding"] = 0.into();
    });
    assert!(stderr.contains("does not fit"), "{stderr}");
}

#[test]
fn non_images_and_corrupt_cifar_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let (code, _, stderr) = dgating(&["train", "--model", "lenet5", "--data", "wine", "--epochs", "1", "--out", run_s]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("28x28 or 32x32") && stderr.contains("13 features"), "{stderr}");
    let (code, _, stderr) =
        dgating(&["train", "--model", "mlp", "--width", "0.5", "--data", "wine", "--epochs", "1", "--out", run_s]);
    assert_eq!(code, 1);
    assert!(stderr.contains("conv presets only"), "{stderr}");

    let cifar = dir.path().join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    std::fs::write(cifar.join("data_batch_1.bin"), vec![0u8; 3073 * 2 + 100]).unwrap();
    let (code, _, stderr) =
        dgating(&["train", "--model", "resnet20", "--data", cifar.to_str().unwrap(), "--epochs", "1", "--out", run_s]);
    assert_eq!(code, 1);
    assert!(stderr.contains("data_batch_1.bin") && stderr.contains("truncated"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A truncated IDX image file names the file.
    let idx = dir.path().join("idx");
    std::fs::create_dir(&idx).unwrap();
    write_images(&idx, "train", 8);
    let images = idx.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 100]).unwrap();
    let (code, _, stderr) =
        dgating(&["train", "--model", "lenet5", "--data", idx.to_str().unwrap(), "--epochs", "1", "--out", run_s]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("train-images-idx3-ubyte") && !stderr.contains("panicked"), "{stderr}");
}
