//! Fixtures shared by the CLI's integration tests.

use std::path::Path;

/// `n` 28x28 images whose class (0..4) sets which quadrant is bright, as raw IDX files.
pub fn write_images(dir: &Path, prefix: &str, n: u32) {
    let mut img = vec![0, 0, 8, 3];
    for d in [n, 28, 28] {
        img.extend(d.to_be_bytes());
    }
    let mut lab = vec![0, 0, 8, 1];
    lab.extend(n.to_be_bytes());
    for i in 0..n {
        let class = (i % 4) as usize;
        for y in 0..28 {
            for x in 0..28 {
                let quadrant = (y / 14) * 2 + x / 14;
                let noise = ((i as usize * 31 + y * 7 + x * 13) % 50) as u8;
                img.push(if quadrant == class { 200 + noise } else { noise });
            }
        }
        lab.push(class as u8);
    }
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lab).unwrap();
}
