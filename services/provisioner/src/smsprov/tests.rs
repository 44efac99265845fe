use super::*;

fn settings(url: &str) -> ProviderSettings {
    ProviderSettings {
        url: url.into(),
        user: "CORP\\svc".into(),
        password_env: None,
        password_file: None,
        auth: default_auth(),
        kdc: None,
        spn: None,
        ca_file: None,
        connect_to: None,
        site_system_url: None,
        timeout_secs: 30,
    }
}

#[test]
fn kerberos_needs_a_kdc_and_names_each_hosts_own_service() {
    let mut s = settings("https://cen-site.corp.example.com:5986/wsman");
    s.auth = "kerberos".into();
    assert!(s.auth().unwrap_err().to_string().contains("KDC"));
    s.kdc = Some("dc01.corp.example".into());
    s.spn = Some("HTTP/cen-site-alias.corp.example".into());
    let auth = s.auth().expect("kerberos with a KDC");
    let password = Password::new("pw");
    let provider = s.endpoint(s.url.clone(), &password, auth.clone());
    let Auth::Kerberos { spn, kdc } = provider.auth else {
        panic!("kerberos")
    };
    assert_eq!(spn.as_deref(), Some("HTTP/cen-site-alias.corp.example"));
    assert_eq!(kdc.as_str(), "tcp://dc01.corp.example:88");
    // A site system's registry is another host: its own HTTP/<host>.
    let site_system = s.endpoint(s.site_system_url("cen-sup1"), &password, auth);
    assert!(matches!(site_system.auth, Auth::Kerberos { spn: None, .. }));
}

#[test]
fn a_site_systems_winrm_is_the_providers_with_its_own_name() {
    let s = settings("https://cen-site.corp.example.com:5986/wsman");
    assert_eq!(
        s.site_system_url("cen-sup01.corp.example.com"),
        "https://cen-sup01.corp.example.com:5986/wsman"
    );
    let s = ProviderSettings {
        site_system_url: Some("http://{server}:80/wsman".into()),
        ..settings("http://x/wsman")
    };
    assert_eq!(s.site_system_url("a"), "http://a:80/wsman");
}

#[test]
fn the_password_comes_only_by_reference() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("pw");
    std::fs::write(&file, "s3cret\n").expect("write");
    let s = ProviderSettings {
        password_file: Some(file),
        ..settings("http://x/wsman")
    };
    assert_eq!(s.password().expect("password").expose(), "s3cret");
    let none = settings("http://x/wsman");
    assert!(none.password().is_err());
    let both = ProviderSettings {
        password_env: Some("X".into()),
        password_file: Some("/x".into()),
        ..settings("http://x/wsman")
    };
    assert!(both.password().is_err());
    let unset = ProviderSettings {
        password_env: Some("SUP_TEST_UNSET_PROVIDER_PASSWORD".into()),
        ..settings("http://x/wsman")
    };
    let e = unset.password().expect_err("unset").to_string();
    assert!(e.contains("SUP_TEST_UNSET_PROVIDER_PASSWORD"), "{e}");
}

#[test]
fn providers_come_from_the_environment_too() {
    // A service name of its own keeps these variables away from other tests.
    // SAFETY: this test is the only reader and writer of these variables.
    unsafe {
        std::env::set_var(
            "SUP_PROVTEST__PROVIDERS__CEN__URL",
            "http://cen-site:5985/wsman",
        );
        std::env::set_var("SUP_PROVTEST__PROVIDERS__CEN__USER", "LAB\\sup-provider");
        std::env::set_var("SUP_PROVTEST__PROVIDERS__CEN__PASSWORD_ENV", "PW");
    }
    let s: sup_runtime::ServiceSettings<crate::Settings> =
        sup_runtime::load_config("provtest", crate::DEFAULTS, None).expect("settings");
    let (code, p) = s.own.providers.iter().next().expect("one provider");
    assert!(code.eq_ignore_ascii_case("CEN"));
    assert_eq!(p.user, "LAB\\sup-provider");
    assert_eq!(p.password_env.as_deref(), Some("PW"));
    assert_eq!(p.auth, "ntlm");
}
