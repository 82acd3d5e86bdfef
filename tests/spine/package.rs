//! The Debian package, as `cargo deb` builds it from `[package.metadata.deb]`: what it installs,
//! the maintainer scripts Debian runs, and the packaged binary running on the packaged
//! configuration, unpacked into a scratch root (nothing is installed on this machine).
//!
//! The package is built around this build's binary (`cargo deb --no-build`, the binary placed
//! where cargo deb looks for it), so the test costs no second compilation; the layout, the
//! scripts and the unit are those of a release build's package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `command`, failing the test with its output unless it succeeds.
fn run(command: &mut Command) -> String {
    let Output { status, stdout, stderr } =
        command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let (stdout, stderr) = (String::from_utf8_lossy(&stdout), String::from_utf8_lossy(&stderr));
    assert!(status.success(), "{command:?}: {status}\n{stdout}\n{stderr}");
    stdout.into_owned()
}

/// `cargo deb` of this checkout around the test's binary: the `.deb`'s path.
fn build_package(scratch: &Path) -> PathBuf {
    let target = scratch.join("target");
    std::fs::create_dir_all(target.join("release")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_chatbundle"), target.join("release/chatbundle")).unwrap();
    let deb = scratch.join("chatbundle.deb");
    run(Command::new("cargo-deb")
        .args(["--no-build", "--fast", "--output"])
        .arg(&deb)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", &target));
    deb
}

#[test]
#[ignore = "needs cargo-deb, dpkg-deb, lintian and systemd-analyze: run scripts/test"]
fn the_debian_package_installs_a_hardened_service_that_starts_on_its_own_configuration() {
    let scratch = tempfile::tempdir().unwrap();
    let deb = build_package(scratch.path());

    // Debian's own checks of the package, warnings included.
    run(Command::new("lintian").args(["--fail-on", "error,warning"]).arg(&deb));

    let control = run(Command::new("dpkg-deb").arg("--field").arg(&deb));
    assert!(control.contains("Package: chatbundle\n"), "{control}");
    assert!(control.contains("Architecture: amd64\n"), "{control}");
    let depends = control.lines().find(|l| l.starts_with("Depends:")).expect("a Depends field");
    assert!(depends.contains("adduser") && depends.contains("libc6"), "{depends}");

    // What it installs, and with which modes.
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    let mode_of = |path: &str| -> String {
        let line = contents
            .lines()
            .find(|l| l.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{contents}"));
        line.split_whitespace().next().unwrap().to_string()
    };
    assert_eq!(mode_of("usr/bin/chatbundle"), "-rwxr-xr-x");
    assert_eq!(mode_of("usr/lib/systemd/system/chatbundle.service"), "-rw-r--r--");
    assert_eq!(mode_of("etc/chatbundle/config.toml"), "-rw-r--r--");
    assert!(!contents.contains("/usr/lib/debug/"), "debug symbols belong in the dbgsym package");

    // The maintainer scripts: valid shell, with the hooks Debian's packages use.
    let control_dir = scratch.path().join("control");
    run(Command::new("dpkg-deb").arg("--control").arg(&deb).arg(&control_dir));
    let script = |name: &str| std::fs::read_to_string(control_dir.join(name)).unwrap();
    assert_eq!(script("conffiles").trim(), "/etc/chatbundle/config.toml", "the config survives upgrades");
    for name in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(control_dir.join(name)));
    }
    let postinst = script("postinst");
    // The system user and its private data directory, before the unit is started.
    let user = postinst.find("adduser --system --group").expect("postinst adds the system user");
    assert!(postinst.contains("install -d -m 0700 /var/lib/chatbundle"), "{postinst}");
    assert!(postinst.contains("chown chatbundle:chatbundle /var/lib/chatbundle"), "{postinst}");
    let enable =
        postinst.find("deb-systemd-helper enable chatbundle.service").expect("postinst enables the unit");
    let start =
        postinst.find("deb-systemd-invoke $_dh_action chatbundle.service").expect("postinst starts it");
    assert!(user < enable && enable < start, "user, then enable, then start:\n{postinst}");
    assert!(postinst.contains("_dh_action=restart"), "an upgrade restarts it:\n{postinst}");
    assert!(script("prerm").contains("deb-systemd-invoke stop chatbundle.service"), "removing stops it");
    let postrm = script("postrm");
    let purge = postrm.rfind("if [ \"$1\" = \"purge\" ]; then").expect("postrm has a purge branch");
    assert!(postrm[purge..].contains("rm -rf /var/lib/chatbundle"), "{postrm}");
    assert_eq!(postrm.matches("/var/lib/chatbundle").count(), 1, "data removed on purge only:\n{postrm}");

    // Unpacked into a scratch root: the packaged binary accepts the packaged configuration as it
    // stands, and the unit names that binary and that file.
    let root = scratch.path().join("root");
    run(Command::new("dpkg-deb").arg("--extract").arg(&deb).arg(&root));
    let checked = run(Command::new(root.join("usr/bin/chatbundle"))
        .env_clear()
        .arg("--config")
        .arg(root.join("etc/chatbundle/config.toml"))
        .arg("check-config"));
    assert!(checked.contains("data_dir     = \"/var/lib/chatbundle\""), "{checked}");
    assert!(checked.contains("listen       = \"127.0.0.1:8080\""), "{checked}");
    assert!(checked.contains("sqlite:///var/lib/chatbundle/chatbundle.db"), "SQLite by default:\n{checked}");
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/chatbundle.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/chatbundle --config /etc/chatbundle/config.toml serve"),
        "{unit}"
    );
    assert!(unit.contains("\nUser=chatbundle\n") && unit.contains("\nStateDirectoryMode=0700\n"), "{unit}");
    // systemd checks the unit inside the root (where /usr/bin/chatbundle is the packaged binary),
    // beside this machine's own system units, which it needs for the default dependencies.
    let units = root.join("usr/lib/systemd/system");
    for entry in std::fs::read_dir("/usr/lib/systemd/system").unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && !units.join(entry.file_name()).exists() {
            std::fs::copy(entry.path(), units.join(entry.file_name())).unwrap();
        }
    }
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("chatbundle.service")
        .output()
        .unwrap();
    assert!(verify.status.success(), "systemd-analyze verify: {}", String::from_utf8_lossy(&verify.stderr));
}
