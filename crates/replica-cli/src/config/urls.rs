//! Replica URLs from config keys: file paths, S3 (bucket, endpoint,
//! region, path style, credentials), Azure and GCS, as Litestream builds
//! them, and the helpers they share (host parsing, percent-decoding,
//! redaction of secrets).

use super::*;

impl Resolver<'_> {
    pub(super) fn file_url(
        &self,
        key: &str,
        url: Option<&str>,
        path: Option<&str>,
    ) -> Result<Url, ConfigError> {
        let (path, pkey) = match (url, path) {
            (Some(u), _) if scheme_of(u).is_some() => {
                let ukey = format!("{key}.url");
                let parsed = Url::parse(u)
                    .map_err(|e| self.err(&ukey, format!("{u:?} is not a URL: {e}")))?;
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(self.err(&ukey, no_query_message(u)));
                }
                // As Litestream: a host is read as the path's first component.
                let host = parsed.host_str().unwrap_or("");
                let path = percent_decode(parsed.path())
                    .map_err(|e| self.err(&ukey, format!("{u:?}: {e}")))?;
                (if host.is_empty() { path } else { format!("/{host}{path}") }, ukey)
            }
            (Some(u), _) => (u.to_owned(), format!("{key}.url")),
            (None, Some(p)) => (p.to_owned(), format!("{key}.path")),
            (None, None) => {
                return Err(self.err(
                    key,
                    "no destination: give `path` (a directory) or `url` (file:///dir, s3://bucket/path, ...)",
                ))
            }
        };
        let abs = self.absolute(&path, &pkey)?;
        Url::from_file_path(&abs)
            .map_err(|()| self.err(&pkey, format!("{} cannot be a file URL", abs.display())))
    }

    pub(super) fn s3_url(
        &self,
        key: &str,
        raw: &RawReplica,
        url: Option<&str>,
        globals: &(Option<String>, Option<String>),
    ) -> Result<Url, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let mut bucket = set(&raw.bucket).map(str::to_owned);
        let mut prefix = trim_key(set(&raw.path).unwrap_or(""));
        let mut region = set(&raw.region).map(str::to_owned);
        let mut endpoint = set(&raw.endpoint).map(str::to_owned);
        // Litestream: path style whenever an endpoint is set, unless told.
        let mut path_style = match set(&raw.force_path_style) {
            Some(v) => self.boolean(v, &k("force-path-style"))?,
            None => endpoint.is_some(),
        };
        let skip_verify = match set(&raw.skip_verify) {
            Some(v) => self.boolean(v, &k("skip-verify"))?,
            None => false,
        };
        if let Some(u) = url {
            let parts = self.url_parts(u, &k("url"))?;
            let host = parse_s3_host(&parts.host);
            prefix = parts.path;
            bucket = Some(host.bucket);
            region = region.or(host.region);
            endpoint = endpoint.or(host.endpoint);
            path_style = path_style || host.path_style;
        }
        let bucket = bucket.filter(|b| !b.is_empty()).ok_or_else(|| {
            self.err(
                k("bucket"),
                "missing: s3 replicas need `bucket` (or a url such as s3://bucket/path)",
            )
        })?;
        // The AWS SDK Litestream uses assumes https for an endpoint without a scheme.
        let endpoint = endpoint.map(|e| {
            if e.contains("://") {
                e
            } else {
                format!("https://{e}")
            }
        });
        if region.is_none() && endpoint.is_some() {
            region = Some(S3_DEFAULT_REGION.to_owned());
        }
        let https = endpoint
            .as_deref()
            .is_none_or(|e| e.to_ascii_lowercase().starts_with("https://"));
        // The SDK also falls back to path style for names a host cannot carry.
        let virtual_hosted = !path_style && host_compatible_bucket(&bucket, https);
        let endpoint = match endpoint {
            Some(e) if virtual_hosted => {
                // object_store takes a virtual-hosted endpoint with the bucket in it.
                let mut parsed = Url::parse(&e)
                    .map_err(|err| self.err(k("endpoint"), format!("{e:?} is not a URL: {err}")))?;
                let host = parsed.host_str().unwrap_or("").to_owned();
                parsed
                    .set_host(Some(&format!("{bucket}.{host}")))
                    .map_err(|err| {
                        self.err(
                            k("endpoint"),
                            format!("cannot put bucket {bucket:?} in {e:?}: {err}"),
                        )
                    })?;
                Some(parsed.as_str().trim_end_matches('/').to_owned())
            }
            other => other,
        };
        let allow_http = !https;
        let access_key_id = set(&raw.access_key_id)
            .or(set(&globals.0))
            .map(str::to_owned)
            .or_else(|| self.litestream_env("AWS_ACCESS_KEY_ID", "LITESTREAM_ACCESS_KEY_ID"));
        let secret_access_key = set(&raw.secret_access_key)
            .or(set(&globals.1))
            .map(str::to_owned)
            .or_else(|| {
                self.litestream_env("AWS_SECRET_ACCESS_KEY", "LITESTREAM_SECRET_ACCESS_KEY")
            });

        let mut out = self.object_url("s3", &bucket, &prefix, key)?;
        {
            let mut q = out.query_pairs_mut();
            if let Some(region) = &region {
                q.append_pair("region", region);
            }
            if let Some(endpoint) = &endpoint {
                q.append_pair("endpoint", endpoint);
            }
            q.append_pair(
                "virtual_hosted_style_request",
                if virtual_hosted { "true" } else { "false" },
            );
            if allow_http {
                q.append_pair("allow_http", "true");
            }
            if skip_verify {
                q.append_pair("allow_invalid_certificates", "true");
            }
            if let Some(v) = &access_key_id {
                q.append_pair("access_key_id", v);
            }
            if let Some(v) = &secret_access_key {
                q.append_pair("secret_access_key", v);
            }
        }
        Ok(out)
    }

    pub(super) fn abs_url(
        &self,
        key: &str,
        raw: &RawReplica,
        url: Option<&str>,
        path: Option<&str>,
    ) -> Result<Url, ConfigError> {
        let k = |name: &str| format!("{key}.{name}");
        let mut account = set(&raw.account_name).map(str::to_owned);
        let mut bucket = set(&raw.bucket).map(str::to_owned);
        let mut prefix = trim_key(path.unwrap_or(""));
        if let Some(u) = url {
            let parts = self.url_parts(u, &k("url"))?;
            if account.is_none() && !parts.user.is_empty() {
                account = Some(parts.user);
            }
            bucket = Some(parts.host);
            prefix = parts.path;
        }
        let bucket = bucket.filter(|b| !b.is_empty()).ok_or_else(|| {
            self.err(
                k("bucket"),
                "missing: abs replicas need `bucket` (the container), \
                 or a url such as abs://ACCOUNT@CONTAINER/path",
            )
        })?;
        let account = account.ok_or_else(|| {
            self.err(
                k("account-name"),
                "missing: abs replicas need `account-name` (or a url such as abs://ACCOUNT@CONTAINER/path)",
            )
        })?;
        let account_key = set(&raw.account_key)
            .map(str::to_owned)
            .or_else(|| (self.env)("LITESTREAM_AZURE_ACCOUNT_KEY").filter(|v| !v.is_empty()));
        let endpoint = set(&raw.endpoint);
        let mut out = self.object_url("az", &bucket, &prefix, key)?;
        {
            let mut q = out.query_pairs_mut();
            q.append_pair("account_name", &account);
            if let Some(v) = &account_key {
                q.append_pair("access_key", v);
            }
            if let Some(e) = endpoint {
                q.append_pair("endpoint", e);
                if e.to_ascii_lowercase().starts_with("http://") {
                    q.append_pair("allow_http", "true");
                }
            }
        }
        Ok(out)
    }

    /// `scheme://bucket/prefix`, checking that the bucket survives as a host.
    pub(super) fn object_url(
        &self,
        scheme: &str,
        bucket: &str,
        prefix: &str,
        key: &str,
    ) -> Result<Url, ConfigError> {
        let bad = || {
            self.err(
                format!("{key}.bucket"),
                format!("{bucket:?} is not a valid bucket name"),
            )
        };
        let mut url = Url::parse(&format!("{scheme}://{bucket}")).map_err(|_| bad())?;
        if url.host_str() != Some(bucket) || !url.path().is_empty() {
            return Err(bad());
        }
        if !prefix.is_empty() {
            url.set_path(&format!("/{prefix}"));
        }
        Ok(url)
    }

    /// Host (with port), user and cleaned path of an object store URL.
    pub(super) fn url_parts(&self, u: &str, key: &str) -> Result<UrlParts, ConfigError> {
        let parsed =
            Url::parse(u).map_err(|e| self.err(key, format!("{u:?} is not a URL: {e}")))?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(self.err(key, no_query_message(u)));
        }
        let mut host = parsed.host_str().unwrap_or("").to_owned();
        if let Some(port) = parsed.port() {
            host = format!("{host}:{port}");
        }
        let user =
            percent_decode(parsed.username()).map_err(|e| self.err(key, format!("{u:?}: {e}")))?;
        let path =
            percent_decode(parsed.path()).map_err(|e| self.err(key, format!("{u:?}: {e}")))?;
        Ok(UrlParts {
            host,
            user,
            path: trim_key(&path),
        })
    }

    /// `aws` from the environment is used as is by `replica::open`; when it
    /// is unset, Litestream copies `litestream` into it.
    pub(super) fn litestream_env(&self, aws: &str, litestream: &str) -> Option<String> {
        let set = |name: &str| (self.env)(name).filter(|v| !v.is_empty());
        if set(aws).is_some() {
            return None;
        }
        set(litestream)
    }

    /// `~` expanded from `HOME`, then absolute against the current directory
    /// and cleaned (Go's `filepath.Abs`).
    pub(super) fn absolute(&self, path: &str, key: &str) -> Result<PathBuf, ConfigError> {
        let path = if path == "~" || path.starts_with("~/") {
            let home = (self.env)("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| {
                    self.err(
                        key,
                        format!("cannot expand {path:?}: HOME is not set; give an absolute path"),
                    )
                })?;
            Path::new(&home).join(path.strip_prefix("~/").unwrap_or(""))
        } else {
            PathBuf::from(path)
        };
        let path = if path.is_absolute() {
            path
        } else {
            let cwd = std::env::current_dir().map_err(|e| {
                self.err(key, format!("cannot make {} absolute: {e}", path.display()))
            })?;
            cwd.join(path)
        };
        let mut clean = PathBuf::new();
        for c in path.components() {
            match c {
                Component::ParentDir => {
                    clean.pop();
                }
                Component::CurDir => {}
                other => clean.push(other),
            }
        }
        Ok(clean)
    }
}

pub(super) fn no_query_message(u: &str) -> String {
    format!(
        "{u:?} has a query or fragment, which Litestream ignores; \
         remove it and use the replica's keys (endpoint, region, layout, ...)"
    )
}

/// The scheme, if `s` starts with one (as Go's `url.Parse` finds it).
pub(super) fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .then_some(scheme)
}

/// A key prefix as Litestream cleans a URL's path (Go's `path.Clean`, no
/// leading `/`); `` for the bucket's root.
pub(super) fn trim_key(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

pub(super) fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("bad %-escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "%-escapes that are not UTF-8".to_owned())
}

/// What Litestream 0.3.13's `s3.ParseHost` reads from an s3:// URL's host.
#[derive(Debug, PartialEq)]
pub(super) struct S3Host {
    pub(super) bucket: String,
    pub(super) region: Option<String>,
    pub(super) endpoint: Option<String>,
    pub(super) path_style: bool,
}

pub(super) fn parse_s3_host(s: &str) -> S3Host {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (s, None),
    };
    // `[BUCKET.]LABEL.SUFFIX`, LABEL without dots: (bucket, label).
    let split = |suffix: &str| -> Option<(String, String)> {
        let rest = host.strip_suffix(suffix)?;
        let (bucket, label) = match rest.rsplit_once('.') {
            Some((b, l)) => (b, l),
            None => ("", rest),
        };
        (!label.is_empty()).then(|| (bucket.to_owned(), label.to_owned()))
    };
    // `[BUCKET.]s3.REGION.SUFFIX`.
    let split_s3 = |suffix: &str| -> Option<(String, String)> {
        let (before, region) = split(suffix)?;
        let bucket = if before == "s3" {
            ""
        } else {
            before.strip_suffix(".s3")?
        };
        Some((bucket.to_owned(), region))
    };
    let (bucket, region, endpoint, scheme) = if host == "localhost" || host.ends_with(".localhost")
    {
        let bucket = host
            .strip_suffix("localhost")
            .unwrap_or("")
            .trim_end_matches('.');
        (
            bucket.to_owned(),
            Some(S3_DEFAULT_REGION.to_owned()),
            "localhost".to_owned(),
            "http",
        )
    } else if let Some((bucket, region)) = split_s3(".backblazeb2.com") {
        let endpoint = format!("s3.{region}.backblazeb2.com");
        (bucket, Some(region), endpoint, "https")
    } else if host == "s3.filebase.com" || host.ends_with(".s3.filebase.com") {
        let bucket = host
            .strip_suffix("s3.filebase.com")
            .unwrap_or("")
            .trim_end_matches('.');
        (
            bucket.to_owned(),
            None,
            "s3.filebase.com".to_owned(),
            "https",
        )
    } else if let Some((bucket, region)) = split(".digitaloceanspaces.com") {
        let endpoint = format!("{region}.digitaloceanspaces.com");
        (bucket, Some(region), endpoint, "https")
    } else if let Some((bucket, region)) = split_s3(".scw.cloud") {
        let endpoint = format!("s3.{region}.scw.cloud");
        (bucket, Some(region), endpoint, "https")
    } else if let Some((bucket, region)) = split(".linodeobjects.com") {
        let endpoint = format!("{region}.linodeobjects.com");
        (bucket, Some(region), endpoint, "https")
    } else {
        return S3Host {
            bucket: host.to_owned(),
            region: None,
            endpoint: None,
            path_style: false,
        };
    };
    let endpoint = match port {
        Some(p) => format!("{scheme}://{endpoint}:{p}"),
        None => format!("{scheme}://{endpoint}"),
    };
    S3Host {
        bucket,
        region,
        endpoint: Some(endpoint),
        path_style: true,
    }
}

/// Whether the AWS SDK Litestream uses would put `bucket` in the host.
pub(super) fn host_compatible_bucket(bucket: &str, https: bool) -> bool {
    let b = bucket.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ip_like = bucket.split('.').count() == 4
        && bucket
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    (3..=63).contains(&b.len())
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'.' || *c == b'-')
        && !bucket.contains("..")
        && !ip_like
        && !(https && bucket.contains('.'))
}

pub(super) fn redact(url: &str) -> String {
    let Ok(mut parsed) = Url::parse(url) else {
        return url.to_owned();
    };
    if parsed.query().is_none() {
        return url.to_owned();
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let secret = matches!(k.as_ref(), "secret_access_key" | "access_key");
            (
                k.into_owned(),
                if secret {
                    "***".to_owned()
                } else {
                    v.into_owned()
                },
            )
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.into()
}
