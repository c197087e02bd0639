//! python3 copying 256 MiB bytes objects under the library: same hashes as
//! without it, and the copies went through the engine and its workers.

use ipc_offload_tests::*;

const SCRIPT: &str = r#"
import hashlib, sys
n = 256 << 20
src = bytes(bytearray(range(256)) * (n // 256))
digests = []
for _ in range(3):
    a = bytearray(src)              # memcpy of 256 MiB
    b = bytes(a)                    # and back
    c = b[1:]                       # unaligned copy
    m = bytes(memoryview(a)[3:])    # copy through a memoryview
    digests.append(hashlib.sha256(b).hexdigest() + hashlib.sha256(c).hexdigest() + hashlib.sha256(m).hexdigest())
assert len(set(digests)) == 1
print(digests[0])
"#;

#[test]
fn python_copies_256_mib_objects_byte_exact() {
    let Some(python) = python() else { return };
    let plain = run_plain(&python, &["-c", SCRIPT]).success();
    let dir = scratch("python");
    let stats = dir.join("stats.json");
    let out = Preload::new().stats(&stats).run(&python, &["-c", SCRIPT]).success();
    assert_eq!(out.stdout, plain.stdout);
    let s = read_stats(&stats);
    let offloaded = engine_bytes(&s, "memcpy", "async-cpu");
    assert!(offloaded >= 12 * (255 << 20), "only {offloaded} bytes offloaded: {s}");
    assert!(counter(&s, "memcpy", "worker_bytes") > 0, "{s}");
    assert_eq!(s["process"].as_str(), python.file_name().unwrap().to_str());
}
