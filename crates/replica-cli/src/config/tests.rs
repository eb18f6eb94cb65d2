//! The config parser's tests.
use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn ok(text: &str) -> Config {
    parse(text, &no_env).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match parse(text, &no_env) {
        Ok(c) => panic!("parsed: {c:?}"),
        Err(e) => e.to_string(),
    }
}

/// The single replica of the single database.
fn one(text: &str) -> ReplicaConfig {
    let mut c = ok(text);
    assert_eq!(c.dbs.len(), 1);
    assert_eq!(c.dbs[0].replicas.len(), 1);
    c.dbs.remove(0).replicas.remove(0)
}

/// One database with one replica whose keys are `body`'s lines.
fn replica_yaml(body: &str) -> String {
    let mut out = String::from("dbs:\n  - path: /data/app.db\n    replicas:\n");
    for (i, line) in body.lines().enumerate() {
        out.push_str(if i == 0 { "      - " } else { "        " });
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn query(url: &str) -> Vec<(String, String)> {
    Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const FULL: &str = r#"
# A Litestream 0.3 config using every key replica reads.
addr: ":9090"
access-key-id: AKIAGLOBAL
secret-access-key: ${GLOBAL_SECRET}
logging:
  level: debug
  type: json
  stderr: true

dbs:
  - path: /var/lib/app/app.db
    monitor-interval: 500ms
    checkpoint-interval: 10m
    min-checkpoint-page-count: 2000
    max-checkpoint-page-count: 20000
    replicas:
      - path: /backups/app
        retention: 72h
        retention-check-interval: 30m
        sync-interval: 10s
        snapshot-interval: 6h
        validation-interval: 12h
      - name: archive
        url: file:///mnt/archive/app
        layout: litestream-0.4
      - name: aws
        type: s3
        bucket: my-bucket
        path: backups/app
        region: eu-west-1
        access-key-id: AKIALOCAL
        secret-access-key: $LOCAL_SECRET
        sync-interval: 1h30m
      - name: minio
        type: s3
        bucket: dev
        path: app
        endpoint: http://127.0.0.1:9000
        force-path-style: true
        skip-verify: true
      - name: spaces
        url: s3://bkt.nyc3.digitaloceanspaces.com/app
      - name: gcs
        type: gcs
        bucket: my-gcs
        path: db/app
      - name: gcs-url
        url: gcs://other-gcs/app
      - name: azure
        type: abs
        account-name: acct
        account-key: a2V5+w==
        bucket: container
        path: app
        endpoint: https://acct.blob.example.net
      - name: azure-url
        url: abs://acct2@container2/db
  - path: /var/lib/app/other.db
    replicas:
      - url: s3://bucket2/other
"#;

#[test]
fn config_full_litestream_example_parses() {
    let env = |name: &str| match name {
        "GLOBAL_SECRET" => Some("global/secret".to_owned()),
        "LOCAL_SECRET" => Some("local+secret".to_owned()),
        _ => None,
    };
    let c = parse(FULL, &env).unwrap();
    assert!(c.ignored.is_empty(), "{:?}", c.ignored);
    assert_eq!(c.addr.as_deref(), Some(":9090"));
    assert_eq!(
        c.logging,
        Logging {
            level: Some("debug"),
            json: Some(true),
            stderr: Some(true),
        }
    );
    assert_eq!(c.heartbeat, None);
    assert_eq!(c.dbs.len(), 2);
    let db = &c.dbs[0];
    assert_eq!(db.path, PathBuf::from("/var/lib/app/app.db"));
    assert_eq!(db.monitor_interval, Duration::from_millis(500));
    assert_eq!(db.checkpoint_interval, secs(600));
    assert_eq!(db.min_checkpoint_page_count, 2000);
    assert_eq!(db.max_checkpoint_page_count, 20000);
    let names: Vec<&str> = db.replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "file",
            "archive",
            "aws",
            "minio",
            "spaces",
            "gcs",
            "gcs-url",
            "azure",
            "azure-url"
        ]
    );

    let file = &db.replicas[0];
    assert_eq!(file.url, "file:///backups/app");
    assert_eq!(file.retention, secs(72 * 3600));
    assert_eq!(file.retention_check_interval, secs(1800));
    assert_eq!(file.sync_interval, secs(10));
    assert_eq!(file.snapshot_interval, Some(secs(6 * 3600)));
    assert_eq!(file.validation_interval, Some(secs(12 * 3600)));

    assert_eq!(
        db.replicas[1].url,
        "file:///mnt/archive/app?layout=litestream-0.4"
    );

    let aws = &db.replicas[2];
    assert_eq!(aws.sync_interval, secs(5400));
    assert!(
        aws.url.starts_with("s3://my-bucket/backups/app?"),
        "{}",
        aws.url
    );
    assert_eq!(
        query(&aws.url),
        pairs(&[
            ("region", "eu-west-1"),
            ("virtual_hosted_style_request", "true"),
            ("access_key_id", "AKIALOCAL"),
            ("secret_access_key", "local+secret"),
        ])
    );

    let minio = &db.replicas[3];
    assert!(minio.url.starts_with("s3://dev/app?"), "{}", minio.url);
    assert_eq!(
        query(&minio.url),
        pairs(&[
            ("region", "us-east-1"),
            ("endpoint", "http://127.0.0.1:9000"),
            ("virtual_hosted_style_request", "false"),
            ("allow_http", "true"),
            ("allow_invalid_certificates", "true"),
            ("access_key_id", "AKIAGLOBAL"),
            ("secret_access_key", "global/secret"),
        ])
    );

    let spaces = &db.replicas[4];
    assert!(spaces.url.starts_with("s3://bkt/app?"), "{}", spaces.url);
    assert_eq!(
        query(&spaces.url),
        pairs(&[
            ("region", "nyc3"),
            ("endpoint", "https://nyc3.digitaloceanspaces.com"),
            ("virtual_hosted_style_request", "false"),
            ("access_key_id", "AKIAGLOBAL"),
            ("secret_access_key", "global/secret"),
        ])
    );

    assert_eq!(db.replicas[5].url, "gs://my-gcs/db/app");
    assert_eq!(db.replicas[6].url, "gs://other-gcs/app");

    let azure = &db.replicas[7];
    assert!(
        azure.url.starts_with("az://container/app?"),
        "{}",
        azure.url
    );
    assert_eq!(
        query(&azure.url),
        pairs(&[
            ("account_name", "acct"),
            ("access_key", "a2V5+w=="),
            ("endpoint", "https://acct.blob.example.net"),
        ])
    );
    assert_eq!(db.replicas[8].url, "az://container2/db?account_name=acct2");

    let other = &c.dbs[1];
    assert_eq!(other.path, PathBuf::from("/var/lib/app/other.db"));
    assert_eq!(other.replicas[0].name, "s3");
    assert!(other.replicas[0].url.starts_with("s3://bucket2/other?"));
}

#[test]
fn config_defaults_are_litestreams() {
    let c = ok("dbs:\n  - path: /data/app.db\n    replicas:\n      - path: /backups/app\n");
    assert!(c.ignored.is_empty());
    let db = &c.dbs[0];
    assert_eq!(db.monitor_interval, secs(1));
    assert_eq!(db.checkpoint_interval, secs(60));
    assert_eq!(db.min_checkpoint_page_count, 1000);
    assert_eq!(db.max_checkpoint_page_count, 10000);
    let r = &db.replicas[0];
    assert_eq!(r.name, "file");
    assert_eq!(r.sync_interval, secs(1));
    assert_eq!(r.snapshot_interval, None);
    assert_eq!(r.retention, secs(24 * 3600));
    assert_eq!(r.retention_check_interval, secs(3600));
    assert_eq!(r.validation_interval, None);
}

#[test]
fn config_zero_intervals_follow_litestream() {
    let r = one(&replica_yaml(
            "path: /b\nsnapshot-interval: 0s\nvalidation-interval: \"0\"\nretention: 0\nretention-check-interval: 0",
        ));
    assert_eq!(r.snapshot_interval, None);
    assert_eq!(r.validation_interval, None);
    assert_eq!(r.retention, Duration::ZERO);
    // Capped at the retention period, as Litestream's retainer does.
    let r = one(&replica_yaml("path: /b\nretention: 10m"));
    assert_eq!(r.retention_check_interval, secs(600));
    let e = err(&replica_yaml("path: /b\nsync-interval: 0s"));
    assert!(
        e.contains("dbs[0].replicas[0].sync-interval") && e.contains("greater than zero"),
        "{e}"
    );
    let e = err("dbs:\n  - path: /a\n    monitor-interval: 0\n    replicas: [{path: /b}]\n");
    assert!(e.contains("dbs[0].monitor-interval"), "{e}");
    let e =
        err("dbs:\n  - path: /a\n    min-checkpoint-page-count: 0\n    replicas: [{path: /b}]\n");
    assert!(e.contains("dbs[0].min-checkpoint-page-count"), "{e}");
    let c = ok("dbs:\n  - path: /a\n    max-checkpoint-page-count: 0\n    checkpoint-interval: 0s\n    replicas: [{path: /b}]\n");
    assert_eq!(c.dbs[0].max_checkpoint_page_count, 0);
    assert_eq!(c.dbs[0].checkpoint_interval, Duration::ZERO);
}

#[test]
fn config_env_expansion_like_go() {
    let env = |name: &str| match name {
        "BUCKET" => Some("env-bucket".to_owned()),
        "DIR" => Some("backups".to_owned()),
        _ => None,
    };
    assert_eq!(
        expand_env("a ${BUCKET} b $BUCKET/c", &env),
        "a env-bucket b env-bucket/c"
    );
    assert_eq!(expand_env("x${UNSET}y$UNSET.z", &env), "xy.z");
    // Go's corner cases: `$$` and `$1` are (unset) specials, `${}` and an
    // unclosed `${` are dropped, a `$` before anything else stays.
    assert_eq!(expand_env("p$$w $1 ${} $ $% end$", &env), "pw   $ $% end$");
    assert_eq!(expand_env("${BUCKET", &env), "BUCKET");

    let text =
        "dbs:\n  - path: /data/${DIR}.db\n    replicas:\n      - url: s3://$BUCKET/${DIR}/$UNSET\n";
    let c = parse(text, &env).unwrap();
    assert_eq!(c.dbs[0].path, PathBuf::from("/data/backups.db"));
    assert!(
        c.dbs[0].replicas[0]
            .url
            .starts_with("s3://env-bucket/backups?"),
        "{}",
        c.dbs[0].replicas[0].url
    );
}

#[test]
fn config_load_reads_file_and_honours_no_expand_env() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("litestream.yml");
    // `$` can only be unexpanded text when expansion is off.
    std::fs::write(
            &path,
            "dbs:\n  - path: /data/app.db\n    replicas:\n      - type: s3\n        bucket: b\n        access-key-id: id\n        secret-access-key: pa$$word\n",
        )
        .unwrap();
    let c = load(&path, false).unwrap();
    assert!(
        query(&c.dbs[0].replicas[0].url).contains(&("secret_access_key".into(), "pa$$word".into()))
    );
    let c = load(&path, true).unwrap();
    assert!(
        query(&c.dbs[0].replicas[0].url).contains(&("secret_access_key".into(), "paword".into()))
    );

    let e = load(&dir.path().join("missing.yml"), true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.yml") && e.contains("--config"), "{e}");
    std::fs::write(&path, "dbs: []\n").unwrap();
    let e = load(&path, true).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: dbs: no databases", path.display())),
        "{e}"
    );
}

#[test]
fn config_unknown_top_level_key_is_named() {
    let e = err("dbz:\n  - path: /a\n");
    assert!(
        e.starts_with("config: top level: unknown field `dbz`"),
        "{e}"
    );
}

#[test]
fn config_unknown_db_key_is_named_with_its_place() {
    let e = err("dbs:\n  - path: /a\n    monitor-intervall: 1s\n    replicas: [{path: /b}]\n");
    assert!(
        e.contains("dbs[0]: unknown field `monitor-intervall`"),
        "{e}"
    );
    assert!(e.contains("fix its spelling"), "{e}");
}

#[test]
fn config_unknown_replica_key_is_named_with_its_place() {
    let e = err("dbs:\n  - path: /a\n    replicas:\n      - path: /b\n      - url: s3://b/p\n        sync_interval: 1s\n");
    assert!(
        e.contains("dbs[0].replicas[1]: unknown field `sync_interval`"),
        "{e}"
    );
    let e = err("logging:\n  colour: red\ndbs: []\n");
    assert!(e.contains("logging: unknown field `colour`"), "{e}");
}

#[test]
fn config_sftp_meta_path_and_age_are_rejected() {
    let c = ok("exec: myapp serve --port 80\ndbs:\n  - path: /a\n    replicas: [{path: /b}]\n");
    assert_eq!(c.exec.as_deref(), Some("myapp serve --port 80"));
    let e = err(&replica_yaml("type: sftp\nhost: h:22\nuser: u\npath: /b"));
    assert!(
        e.contains("dbs[0].replicas[0].type: sftp replicas are not supported"),
        "{e}"
    );
    let e = err(&replica_yaml("url: sftp://u@h/b"));
    assert!(
        e.contains("dbs[0].replicas[0].url: sftp replicas are not supported"),
        "{e}"
    );
    let e = err("dbs:\n  - path: /a\n    meta-path: /m\n    replicas: [{path: /b}]\n");
    assert!(
        e.contains("dbs[0].meta-path: `meta-path` is not supported"),
        "{e}"
    );
    let e = err(&replica_yaml("path: /b\nage:\n  recipients: [age1xyz]"));
    assert!(
        e.contains("dbs[0].replicas[0].age: age encryption is not supported"),
        "{e}"
    );
    let e = err(&replica_yaml("type: ftp\npath: /b"));
    assert!(
        e.contains("dbs[0].replicas[0].type: unknown replica type \"ftp\""),
        "{e}"
    );
}

#[test]
fn config_bad_duration_names_key_and_value() {
    let e = err(&replica_yaml("path: /b\nretention: 1 day"));
    assert!(e.contains("dbs[0].replicas[0].retention: \"1 day\""), "{e}");
    assert!(e.contains("Go duration"), "{e}");
    let e = err(&replica_yaml("path: /b\nsync-interval: 10"));
    assert!(
        e.contains("dbs[0].replicas[0].sync-interval: \"10\" has no unit"),
        "{e}"
    );
}

#[test]
fn config_go_durations() {
    let ms = Duration::from_millis;
    for (text, want) in [
        ("1s", secs(1)),
        ("500ms", ms(500)),
        ("10m", secs(600)),
        ("24h", secs(86400)),
        ("1h30m", secs(5400)),
        ("1.5h", secs(5400)),
        (".5s", ms(500)),
        ("1.s", secs(1)),
        ("0", Duration::ZERO),
        ("+2s", secs(2)),
        ("250us", Duration::from_micros(250)),
        ("250µs", Duration::from_micros(250)),
        ("250μs", Duration::from_micros(250)),
        ("10ns", Duration::from_nanos(10)),
        ("1h0m30s", secs(3630)),
    ] {
        assert_eq!(parse_go_duration(text), Ok(want), "{text}");
    }
    for bad in [
        "", "10", "1d", "1 s", "-1s", "s", "1x", "1h 30m", "1week", ".",
    ] {
        assert!(parse_go_duration(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn config_s3_secret_is_url_encoded_and_round_trips() {
    let secret = "a/b+c=d&e f%g?h#i";
    let r = one(&replica_yaml(&format!(
            "type: s3\nbucket: my-bucket\npath: /dir/sub dir/\nregion: us-west-2\naccess-key-id: AKIA123\nsecret-access-key: '{secret}'"
        )));
    assert!(
        r.url.starts_with("s3://my-bucket/dir/sub%20dir?"),
        "{}",
        r.url
    );
    assert!(
        r.url
            .contains("secret_access_key=a%2Fb%2Bc%3Dd%26e+f%25g%3Fh%23i"),
        "{}",
        r.url
    );
    let parsed = Url::parse(&r.url).unwrap();
    assert_eq!(parsed.host_str(), Some("my-bucket"));
    assert_eq!(parsed.path(), "/dir/sub%20dir");
    assert_eq!(
        query(&r.url),
        pairs(&[
            ("region", "us-west-2"),
            ("virtual_hosted_style_request", "true"),
            ("access_key_id", "AKIA123"),
            ("secret_access_key", secret),
        ])
    );
    assert_eq!(
        r.redacted_url(),
        "s3://my-bucket/dir/sub%20dir?region=us-west-2&virtual_hosted_style_request=true\
             &access_key_id=AKIA123&secret_access_key=***"
    );
    assert!(!format!("{r:?}").contains("a%2Fb"), "{r:?}");
}

#[test]
fn config_global_credentials_are_inherited_unless_overridden() {
    let c = ok("access-key-id: GID\nsecret-access-key: GSECRET\ndbs:\n  - path: /a\n    replicas:\n      - url: s3://one/p\n      - url: s3://two/p\n        name: two\n        access-key-id: OWN\n        secret-access-key: OWNSECRET\n      - path: /b\n");
    let q0 = query(&c.dbs[0].replicas[0].url);
    assert!(
        q0.contains(&("access_key_id".into(), "GID".into())),
        "{q0:?}"
    );
    assert!(
        q0.contains(&("secret_access_key".into(), "GSECRET".into())),
        "{q0:?}"
    );
    let q1 = query(&c.dbs[0].replicas[1].url);
    assert!(
        q1.contains(&("access_key_id".into(), "OWN".into())),
        "{q1:?}"
    );
    assert!(
        q1.contains(&("secret_access_key".into(), "OWNSECRET".into())),
        "{q1:?}"
    );
    assert_eq!(c.dbs[0].replicas[2].url, "file:///b");
    assert!(c.ignored.is_empty(), "{:?}", c.ignored);
}

#[test]
fn config_litestream_credential_env_vars_fill_in() {
    let text = replica_yaml("url: s3://b/p");
    let env = |name: &str| match name {
        "LITESTREAM_ACCESS_KEY_ID" => Some("LID".to_owned()),
        "LITESTREAM_SECRET_ACCESS_KEY" => Some("LSECRET".to_owned()),
        "LITESTREAM_AZURE_ACCOUNT_KEY" => Some("AZKEY".to_owned()),
        _ => None,
    };
    let c = parse(&text, &env).unwrap();
    let q = query(&c.dbs[0].replicas[0].url);
    assert!(q.contains(&("access_key_id".into(), "LID".into())), "{q:?}");
    assert!(
        q.contains(&("secret_access_key".into(), "LSECRET".into())),
        "{q:?}"
    );
    // AWS_* wins (replica::open reads it itself), as Litestream only copies when unset.
    let env_aws = |name: &str| match name {
        "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => Some("AWS".to_owned()),
        other => env(other),
    };
    let c = parse(&text, &env_aws).unwrap();
    let q = query(&c.dbs[0].replicas[0].url);
    assert!(
        !q.iter()
            .any(|(k, _)| k == "access_key_id" || k == "secret_access_key"),
        "{q:?}"
    );
    let c = parse(&replica_yaml("url: abs://acct@cont/p"), &env).unwrap();
    assert_eq!(
        c.dbs[0].replicas[0].url,
        "az://cont/p?account_name=acct&access_key=AZKEY"
    );
}

#[test]
fn config_http_endpoint_allows_http() {
    let r = one(&replica_yaml(
        "type: s3\nbucket: b\nendpoint: http://minio:9000",
    ));
    assert_eq!(
        query(&r.url),
        pairs(&[
            ("region", "us-east-1"),
            ("endpoint", "http://minio:9000"),
            ("virtual_hosted_style_request", "false"),
            ("allow_http", "true"),
        ])
    );
    let r = one(&replica_yaml(
        "type: s3\nbucket: b\nendpoint: https://s3.example.com\nregion: r1",
    ));
    assert_eq!(
        r.url,
        "s3://b?region=r1&endpoint=https%3A%2F%2Fs3.example.com&virtual_hosted_style_request=false"
    );
    // No scheme: https, as the AWS SDK assumes.
    let r = one(&replica_yaml(
        "type: s3\nbucket: b\nendpoint: s3.example.com",
    ));
    assert!(
        query(&r.url).contains(&("endpoint".into(), "https://s3.example.com".into())),
        "{}",
        r.url
    );
}

#[test]
fn config_force_path_style_maps_to_virtual_hosted_requests() {
    // Explicitly virtual-hosted with an endpoint: object_store wants the bucket in it.
    let r = one(&replica_yaml(
        "type: s3\nbucket: bkt\nendpoint: https://s3.example.com:8443\nforce-path-style: no",
    ));
    let q = query(&r.url);
    assert!(
        q.contains(&("endpoint".into(), "https://bkt.s3.example.com:8443".into())),
        "{q:?}"
    );
    assert!(
        q.contains(&("virtual_hosted_style_request".into(), "true".into())),
        "{q:?}"
    );
    // AWS itself, with force-path-style.
    let r = one(&replica_yaml("url: s3://b/p\nforce-path-style: true"));
    assert_eq!(r.url, "s3://b/p?virtual_hosted_style_request=false");
    // A dotted bucket cannot be a host under https: path style, as the SDK falls back.
    let r = one(&replica_yaml("url: s3://my.bucket.com/db"));
    assert_eq!(
        r.url,
        "s3://my.bucket.com/db?virtual_hosted_style_request=false"
    );
    let e = err(&replica_yaml("url: s3://b/p\nforce-path-style: maybe"));
    assert!(
        e.contains("dbs[0].replicas[0].force-path-style: \"maybe\" is not a boolean"),
        "{e}"
    );
}

#[test]
fn config_s3_provider_hosts_like_litestream() {
    let h = |bucket: &str, region: Option<&str>, endpoint: Option<&str>, path_style| S3Host {
        bucket: bucket.into(),
        region: region.map(Into::into),
        endpoint: endpoint.map(Into::into),
        path_style,
    };
    assert_eq!(parse_s3_host("mybucket"), h("mybucket", None, None, false));
    assert_eq!(
        parse_s3_host("bucket.s3.amazonaws.com"),
        h("bucket.s3.amazonaws.com", None, None, false)
    );
    assert_eq!(
        parse_s3_host("bkt.localhost:9000"),
        h(
            "bkt",
            Some("us-east-1"),
            Some("http://localhost:9000"),
            true
        )
    );
    assert_eq!(
        parse_s3_host("localhost"),
        h("", Some("us-east-1"), Some("http://localhost"), true)
    );
    assert_eq!(
        parse_s3_host("bkt.s3.us-west-002.backblazeb2.com"),
        h(
            "bkt",
            Some("us-west-002"),
            Some("https://s3.us-west-002.backblazeb2.com"),
            true
        )
    );
    assert_eq!(
        parse_s3_host("bkt.s3.filebase.com"),
        h("bkt", None, Some("https://s3.filebase.com"), true)
    );
    assert_eq!(
        parse_s3_host("my.bkt.sfo3.digitaloceanspaces.com"),
        h(
            "my.bkt",
            Some("sfo3"),
            Some("https://sfo3.digitaloceanspaces.com"),
            true
        )
    );
    assert_eq!(
        parse_s3_host("bkt.s3.fr-par.scw.cloud"),
        h(
            "bkt",
            Some("fr-par"),
            Some("https://s3.fr-par.scw.cloud"),
            true
        )
    );
    assert_eq!(
        parse_s3_host("bkt.us-east-1.linodeobjects.com:443"),
        h(
            "bkt",
            Some("us-east-1"),
            Some("https://us-east-1.linodeobjects.com:443"),
            true
        )
    );

    // Through a whole config: localhost is plain http with the default region.
    let r = one(&replica_yaml("url: s3://bkt.localhost:9000/db"));
    assert_eq!(
        r.url,
        "s3://bkt/db?region=us-east-1&endpoint=http%3A%2F%2Flocalhost%3A9000\
             &virtual_hosted_style_request=false&allow_http=true"
    );
    // Config keys win over what the host says.
    let r = one(&replica_yaml(
        "url: s3://bkt.s3.us-west-002.backblazeb2.com/db\nregion: mine",
    ));
    assert!(
        query(&r.url).contains(&("region".into(), "mine".into())),
        "{}",
        r.url
    );
    let e = err(&replica_yaml("url: s3://localhost:9000/db"));
    assert!(e.contains("dbs[0].replicas[0].bucket: missing"), "{e}");
}

#[test]
fn config_gcs_forms() {
    assert_eq!(
        one(&replica_yaml("type: gcs\nbucket: g\npath: a/b")).url,
        "gs://g/a/b"
    );
    assert_eq!(one(&replica_yaml("url: gcs://g/a/./b/")).url, "gs://g/a/b");
    assert_eq!(one(&replica_yaml("url: gs://g")).url, "gs://g");
    let r = one(&replica_yaml("url: gs://g/p\ntype: gcs"));
    assert_eq!((r.name.as_str(), r.url.as_str()), ("gcs", "gs://g/p"));
    let e = err(&replica_yaml("type: gcs\npath: p"));
    assert!(e.contains("dbs[0].replicas[0].bucket: missing"), "{e}");
}

#[test]
fn config_abs_forms() {
    let r = one(&replica_yaml(
        "type: abs\naccount-name: acct\naccount-key: 'ab+/cd=='\nbucket: cont\npath: db",
    ));
    assert_eq!(r.name, "abs");
    assert_eq!(
        r.url,
        "az://cont/db?account_name=acct&access_key=ab%2B%2Fcd%3D%3D"
    );
    assert_eq!(
        query(&r.url),
        pairs(&[("account_name", "acct"), ("access_key", "ab+/cd==")])
    );
    let r = one(&replica_yaml("url: abs://acct@cont/dir/db\naccount-key: K"));
    assert_eq!(r.url, "az://cont/dir/db?account_name=acct&access_key=K");
    // account-name wins over the URL's user; an http endpoint allows http.
    let r = one(&replica_yaml("url: abs://acct@cont/db\naccount-name: other\nendpoint: http://127.0.0.1:10000/devstoreaccount1"));
    assert_eq!(
        query(&r.url),
        pairs(&[
            ("account_name", "other"),
            ("endpoint", "http://127.0.0.1:10000/devstoreaccount1"),
            ("allow_http", "true"),
        ])
    );
    let e = err(&replica_yaml("type: abs\nbucket: cont"));
    assert!(
        e.contains("dbs[0].replicas[0].account-name: missing"),
        "{e}"
    );
}

#[test]
fn config_path_only_replica_is_a_file_replica() {
    let r = one(&replica_yaml("path: /backups/app"));
    assert_eq!(
        (r.name.as_str(), r.url.as_str()),
        ("file", "file:///backups/app")
    );
    // Relative paths are against the current directory, `~` is HOME, `..` is cleaned.
    let cwd = std::env::current_dir().unwrap();
    let home = |name: &str| (name == "HOME").then(|| "/home/me".to_owned());
    let text = "dbs:\n  - path: ~/app.db\n    replicas:\n      - path: rel/../backups\n      - url: ~/b2\n        name: b\n      - url: file:///x/y/../z\n        name: c\n";
    let c = parse(text, &home).unwrap();
    assert_eq!(c.dbs[0].path, PathBuf::from("/home/me/app.db"));
    let want = Url::from_file_path(cwd.join("backups")).unwrap();
    assert_eq!(c.dbs[0].replicas[0].url, want.as_str());
    assert_eq!(c.dbs[0].replicas[1].url, "file:///home/me/b2");
    assert_eq!(c.dbs[0].replicas[2].url, "file:///x/z");
    let e = err("dbs:\n  - path: ~/app.db\n    replicas: [{path: /b}]\n");
    assert!(
        e.contains("dbs[0].path: cannot expand \"~/app.db\": HOME is not set"),
        "{e}"
    );
    // Spaces survive as a file URL.
    assert_eq!(
        one(&replica_yaml("path: /my backups")).url,
        "file:///my%20backups"
    );
    assert_eq!(
        one(&replica_yaml("url: file:///my%20backups")).url,
        "file:///my%20backups"
    );
}

#[test]
fn config_layout_extension() {
    let r = one(&replica_yaml("url: s3://bkt/p\nlayout: litestream-0.3"));
    assert_eq!(
        r.url,
        "s3://bkt/p?virtual_hosted_style_request=true&layout=litestream-0.3"
    );
    let r = one(&replica_yaml("type: gcs\nbucket: g\nlayout: '0.4'"));
    assert_eq!(r.url, "gs://g?layout=litestream-0.4");
    let e = err(&replica_yaml("path: /b\nlayout: litestream-9"));
    assert!(
        e.contains("dbs[0].replicas[0].layout: ") && e.contains("litestream-9"),
        "{e}"
    );
}

#[test]
fn config_conflicting_url_type_path_bucket() {
    let e = err(&replica_yaml("url: s3://b/p\npath: other"));
    assert!(
        e.contains("dbs[0].replicas[0]: both `url` and `path`"),
        "{e}"
    );
    let e = err(&replica_yaml("url: s3://b/p\nbucket: other"));
    assert!(
        e.contains("dbs[0].replicas[0]: both `url` and `bucket`"),
        "{e}"
    );
    let e = err(&replica_yaml("url: s3://b/p\ntype: gcs"));
    assert!(
        e.contains("dbs[0].replicas[0].type: type gcs conflicts with the url's s3://"),
        "{e}"
    );
    let e = err(&replica_yaml("path: s3://b/p"));
    assert!(
        e.contains("dbs[0].replicas[0].path: \"s3://b/p\" is a URL"),
        "{e}"
    );
    let e = err(&replica_yaml("url: s3://b/p?region=x"));
    assert!(
        e.contains("dbs[0].replicas[0].url: ") && e.contains("query"),
        "{e}"
    );
}

#[test]
fn config_structure_errors() {
    let e = err("");
    assert_eq!(e, "config: dbs: no databases: list at least one under `dbs`, each with a `path` and `replicas`");
    let e = err("dbs: []\n");
    assert!(e.starts_with("config: dbs: no databases"), "{e}");
    let e = err("dbs:\n  - replicas: [{path: /b}]\n");
    assert!(e.contains("dbs[0].path: missing"), "{e}");
    let e = err("dbs:\n  - path: /a\n");
    assert!(e.contains("dbs[0].replicas: no replicas"), "{e}");
    let e = err("dbs:\n  - path: /a\n    replicas: []\n");
    assert!(e.contains("dbs[0].replicas: no replicas"), "{e}");
    let e = err("dbs:\n  - path: /a\n    replicas: [{path: /b}, {url: s3://x/y, name: file}]\n");
    assert!(
        e.contains("dbs[0].replicas[1].name: duplicate replica name \"file\""),
        "{e}"
    );
    let e = err("dbs:\n  - path: /a\n    replicas: [{path: /b}]\n  - path: /x/../a\n    replicas: [{path: /c}]\n");
    assert!(e.contains("dbs[1].path: /a is also dbs[0].path"), "{e}");
    let e = err(
        "dbs:\n  - path: /a\n    min-checkpoint-page-count: lots\n    replicas: [{path: /b}]\n",
    );
    assert!(
        e.contains("dbs[0].min-checkpoint-page-count: \"lots\""),
        "{e}"
    );
    let e = err("- just a list\n");
    assert!(e.starts_with("config: invalid type: sequence"), "{e}");
}

#[test]
fn config_keys_for_other_types_are_ignored_with_a_warning() {
    let c = ok(&replica_yaml(
        "path: /b\nregion: us-east-1\nhost: example.com\nage: {}",
    ));
    assert_eq!(
        c.ignored,
        [
            "dbs[0].replicas[0].region (not used by file replicas)",
            "dbs[0].replicas[0].host (not used by file replicas)"
        ]
    );
    let c = ok(&replica_yaml("type: gcs\nbucket: g\nendpoint: http://x"));
    assert_eq!(
        c.ignored,
        ["dbs[0].replicas[0].endpoint (not used by gcs replicas)"]
    );
}

#[test]
fn config_object_store_urls_are_accepted_by_the_opener() {
    // Every option name must be one object_store knows (the opener
    // rejects unknown ones) and the builders must accept the values.
    let env = |name: &str| (name == "GLOBAL_SECRET").then(|| "s".to_owned());
    let c = parse(FULL, &env).unwrap();
    let mut opened = 0;
    for r in c.dbs.iter().flat_map(|d| &d.replicas) {
        if r.url.starts_with("file:") {
            continue;
        }
        let url = Url::parse(&r.url).unwrap();
        let store = replica_object_store::open_url(&url);
        assert!(store.is_ok(), "{}: {:?}", r.name, store.err());
        opened += 1;
    }
    assert_eq!(opened, 8);
    let r = one(&replica_yaml(
        "type: s3\nbucket: bkt\nendpoint: https://s3.example.com\nforce-path-style: false",
    ));
    let store = replica_object_store::open_url(&Url::parse(&r.url).unwrap());
    assert!(store.is_ok(), "{:?}", store.err());
}

const V05: &str = r#"
levels:
  - interval: 200ms
  - interval: 1s
snapshot:
  interval: 2s
  retention: 1h
l0-retention: 30s
l0-retention-check-interval: 5s
dbs:
  - path: /var/lib/app/a.db
    replica:
      url: file:///backups/a
  - path: /var/lib/app/b.db
    snapshot:
      interval: 10s
    replicas:
      - url: file:///backups/b
"#;

#[test]
fn a_litestream_05_config_gives_ltx_settings() {
    let c = ok(V05);
    let a = &c.dbs[0].replicas[0];
    let ltx = a.ltx.as_ref().expect("a 0.5 config");
    assert_eq!(ltx.levels, [Duration::from_millis(200), secs(1)]);
    assert_eq!(ltx.snapshot_interval, secs(2));
    assert_eq!(ltx.retention, secs(3600));
    assert_eq!(ltx.l0_retention, secs(30));
    assert_eq!(ltx.retention_check_interval, secs(5));
    assert_eq!(a.url, "file:///backups/a");
    // A database's own snapshot settings win over the top level's.
    let b = c.dbs[1].replicas[0].ltx.as_ref().unwrap();
    assert_eq!(b.snapshot_interval, secs(10));
    assert_eq!(b.retention, secs(3600));
    // Litestream 0.5's defaults.
    let d = ok("dbs:\n  - path: /x.db\n    replica:\n      url: file:///r\n");
    let d = d.dbs[0].replicas[0].ltx.as_ref().unwrap();
    assert_eq!(d.levels, [secs(30), secs(300), secs(3600)]);
    assert_eq!(
        (d.snapshot_interval, d.retention),
        (secs(86400), secs(86400))
    );
    assert_eq!(
        (d.l0_retention, d.retention_check_interval),
        (secs(300), secs(15))
    );
    // retention.enabled: false keeps everything.
    let off = ok(
        "retention:\n  enabled: false\ndbs:\n  - path: /x.db\n    replica:\n      url: file:///r\n",
    );
    assert_eq!(
        off.dbs[0].replicas[0].ltx.as_ref().unwrap().retention,
        Duration::ZERO
    );
    // A 0.3 config has no LTX settings.
    let old = ok("dbs:\n  - path: /x.db\n    replicas:\n      - url: file:///r\n");
    assert!(old.dbs[0].replicas[0].ltx.is_none());
}

#[test]
fn litestream_05_keys_are_checked_by_name_and_place() {
    let both = err("dbs:\n  - path: /x.db\n    replica:\n      url: file:///r\n    replicas:\n      - url: file:///s\n");
    assert!(
        both.contains("dbs[0].replica") && both.contains("both"),
        "{both}"
    );
    let typo = err(
        "snapshot:\n  retension: 1h\ndbs:\n  - path: /x.db\n    replica:\n      url: file:///r\n",
    );
    assert!(
        typo.contains("retension") && typo.contains("snapshot"),
        "{typo}"
    );
    let level = err(
        "levels:\n  - interval: 0s\ndbs:\n  - path: /x.db\n    replica:\n      url: file:///r\n",
    );
    assert!(level.contains("levels[0].interval"), "{level}");
    let many = err(&format!(
        "levels:\n{}dbs:\n  - path: /x.db\n    replica:\n      url: file:///r\n",
        "  - interval: 1s\n".repeat(9)
    ));
    assert!(many.contains("at most 8"), "{many}");
    let one = err(
        "dbs:\n  - path: /x.db\n    replica:\n      url: file:///r\n      sync-interval: nope\n",
    );
    assert!(one.contains("dbs[0].replica.sync-interval"), "{one}");
}

#[test]
fn litestream_05_database_and_replica_keys_are_applied_or_named_as_ignored() {
    let c = ok("heartbeat-url: http://x\nheartbeat-interval: 2m\ndbs:\n  - path: /x.db\n    busy-timeout: 3s\n    max-sync-wal-bytes: 1048576\n    truncate-page-n: 5000\n    replica:\n      url: s3://b/p\n      part-size: 5MB\n      auto-recover: true\n");
    let db = &c.dbs[0];
    assert_eq!(db.busy_timeout, secs(3));
    assert_eq!(db.max_sync_wal_bytes, Some(1 << 20));
    assert_eq!(
        c.heartbeat,
        Some(Heartbeat {
            url: "http://x".into(),
            interval: secs(120)
        })
    );
    assert_eq!(
        c.ignored,
        [
            "dbs[0].truncate-page-n (a Litestream 0.5 key not acted on yet)",
            "dbs[0].replica.auto-recover (a Litestream 0.5 key not acted on yet)",
            "dbs[0].replica.part-size (a Litestream 0.5 key not acted on yet)",
        ]
    );
    let dir = err(
        "dbs:\n  - path: /x.db\n    meta-dir: /var/lib/ls\n    replica:\n      url: file:///r\n",
    );
    assert!(dir.contains("dbs[0].meta-dir"), "{dir}");
    let bytes = err(
        "dbs:\n  - path: /x.db\n    max-sync-wal-bytes: lots\n    replica:\n      url: file:///r\n",
    );
    assert!(bytes.contains("dbs[0].max-sync-wal-bytes"), "{bytes}");
    // Keys neither Litestream knows are still errors.
    let typo = err(
        "dbs:\n  - path: /x.db\n    replica:\n      url: file:///r\n      sync-intervall: 1s\n",
    );
    assert!(typo.contains("sync-intervall"), "{typo}");
}

#[test]
fn addr_logging_and_heartbeat_are_checked_with_the_key_named() {
    let db = "dbs:\n  - path: /x.db\n    replicas:\n      - url: file:///r\n";
    for (text, key, says) in [
        ("addr: 9090\n", "addr", "has no port"),
        ("addr: \":http\"\n", "addr", "not a port number"),
        ("logging:\n  level: loud\n", "logging.level", "not a level"),
        ("logging:\n  type: xml\n", "logging.type", "not a log type"),
        (
            "logging:\n  stderr: maybe\n",
            "logging.stderr",
            "not a boolean",
        ),
        ("heartbeat-url: ftp://x\n", "heartbeat-url", "not an http"),
        (
            "heartbeat-url: http://x\nheartbeat-interval: 10ms\n",
            "heartbeat-interval",
            "at least 1s",
        ),
    ] {
        let e = err(&format!("{text}{db}"));
        assert!(e.contains(key) && e.contains(says), "{text}: {e}");
    }
    let c = ok(&format!("addr: \"127.0.0.1:0\"\nlogging:\n  level: WARNING\n  type: pretty\n  stderr: false\nheartbeat-url: https://hc.example/ping\n{db}"));
    assert_eq!(c.addr.as_deref(), Some("127.0.0.1:0"));
    assert_eq!(
        c.logging,
        Logging {
            level: Some("warn"),
            json: Some(false),
            stderr: Some(false),
        }
    );
    assert_eq!(c.heartbeat.unwrap().interval, DEFAULT_HEARTBEAT_INTERVAL);
    assert_eq!(parse_addr(":9090").unwrap(), ("".into(), 9090));
    let c = ok(&format!(
        "heartbeat-interval: 1m\nlogging:\n  source: true\n{db}"
    ));
    assert_eq!(c.heartbeat, None);
    assert_eq!(
        c.ignored,
        [
            "logging.source (source locations are not logged)",
            "heartbeat-interval (no heartbeat-url to ping)"
        ]
    );
    assert_eq!(parse_addr("[::1]:80").unwrap(), ("::1".into(), 80));
}
