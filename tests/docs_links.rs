//! The documentation points at what exists: in every Markdown file of the
//! repository (README.md, docs/, and the others; not under build outputs or
//! fuzz/corpus), every relative link resolves to a file or directory of the
//! repository, every #anchor to a heading of its page (GitHub's slugs), and
//! every repository path named in backticks (`runtime/src/ipc/reader.rs`,
//! `tests/c/`, `docs/bench/suite-*.json`, `FILE.PID`-style placeholders and
//! `:LINE` suffixes allowed) exists. And no text file of the repository
//! names a path outside it (`..` and then the sibling `shared` directory).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use ipc_offload_tests::root;

/// The directories never walked: the repository's metadata, build outputs
/// (every directory named `target`, and the .gitignore's plain directory
/// entries) and the fuzzers' corpus.
fn skipped(root: &Path) -> BTreeSet<PathBuf> {
    let mut dirs: BTreeSet<PathBuf> = [".git", "target", "fuzz/corpus"].iter().map(|d| root.join(d)).collect();
    if let Ok(text) = std::fs::read_to_string(root.join(".gitignore")) {
        for line in text.lines().map(str::trim) {
            if let Some(path) = line.strip_prefix('/').map(|p| p.trim_end_matches('/')) {
                if !path.is_empty() && !path.contains(['*', '?', '[', '!']) {
                    dirs.insert(root.join(path));
                }
            }
        }
    }
    dirs
}

/// Every file under `root` outside the skipped directories, sorted.
fn files(root: &Path) -> Vec<PathBuf> {
    let skip = skipped(root);
    let mut found = vec![];
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                if !skip.contains(&path) && entry.file_name() != "target" {
                    todo.push(path);
                }
            } else if kind.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn markdown_files(root: &Path) -> Vec<PathBuf> {
    files(root).into_iter().filter(|f| f.extension().is_some_and(|e| e == "md")).collect()
}

/// `text` with every fenced code block (its fences included) and every HTML
/// comment blanked: each of their characters but newlines becomes a space,
/// so that offsets and line numbers stay those of the file.
fn prose(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<(char, usize)> = None;
    for line in text.split_inclusive('\n') {
        // Fences may be indented (inside list items).
        let trimmed = line.trim_start();
        let run = |c: char| trimmed.chars().take_while(|&x| x == c).count();
        let opens = ['`', '~'].into_iter().map(|c| (c, run(c))).find(|&(_, n)| n >= 3);
        let blank = match (fence, opens) {
            (None, Some(open)) => {
                fence = Some(open);
                true
            }
            (Some((c, n)), Some((c2, n2))) if c == c2 && n2 >= n && trimmed[n2 * c.len_utf8()..].trim().is_empty() => {
                fence = None;
                true
            }
            (Some(_), _) => true,
            (None, _) => false,
        };
        if blank {
            out.extend(line.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
        } else {
            out.push_str(line);
        }
    }
    // HTML comments.
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(start) = rest.find("<!--") {
        let end = rest[start..].find("-->").map_or(rest.len(), |e| start + e + 3);
        result.push_str(&rest[..start]);
        result.extend(rest[start..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
        rest = &rest[end..];
    }
    result.push_str(rest);
    result
}

/// The end of the paragraph that `from` is in: the next blank line.
fn paragraph_end(text: &str, from: usize) -> usize {
    let mut at = from;
    while let Some(nl) = text[at..].find('\n') {
        let line_start = at + nl + 1;
        let line_end = text[line_start..].find('\n').map_or(text.len(), |e| line_start + e);
        if text[line_start..line_end].trim().is_empty() {
            return line_start;
        }
        at = line_start;
    }
    text.len()
}

/// The inline code spans of `prose` (offset of the span, its content with
/// line breaks as spaces), and `prose` with the spans blanked.
fn code_spans(prose: &str) -> (Vec<(usize, String)>, String) {
    let bytes = prose.as_bytes();
    let mut spans = vec![];
    let mut blanked = prose.as_bytes().to_vec();
    let run_at = |i: usize| bytes[i..].iter().take_while(|&&b| b == b'`').count();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let escaped = i > 0 && bytes[i - 1] == b'\\';
        let end = paragraph_end(prose, i);
        let mut j = i + n;
        let mut close = None;
        while j < end {
            if bytes[j] == b'`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) if !escaped => {
                let content = prose[i + n..j].replace('\n', " ");
                spans.push((i, content));
                for b in &mut blanked[i..j + n] {
                    if *b != b'\n' {
                        *b = b' ';
                    }
                }
                i = j + n;
            }
            _ => i += n,
        }
    }
    // Only ASCII bytes were replaced, by ASCII: still UTF-8.
    (spans, String::from_utf8(blanked).expect("UTF-8"))
}

/// The destination of the link whose `(` is at `open`.
fn destination(text: &str, open: usize) -> Option<String> {
    let rest = text[open + 1..].trim_start_matches([' ', '\t']);
    if let Some(angled) = rest.strip_prefix('<') {
        return angled.find('>').map(|e| angled[..e].to_owned());
    }
    let mut depth = 0usize;
    for (k, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 0 => return Some(rest[..k].to_owned()),
            ')' => depth -= 1,
            c if c.is_whitespace() => return Some(rest[..k].to_owned()),
            _ => {}
        }
    }
    None
}

/// The links of a Markdown file: (offset, destination) of inline links and
/// images, reference definitions, and HTML `href`/`src` attributes.
fn links(text: &str) -> Vec<(usize, String)> {
    let (_, plain) = code_spans(&prose(text));
    let mut found = vec![];
    for (at, _) in plain.match_indices("](") {
        if let Some(d) = destination(&plain, at + 1) {
            found.push((at, d));
        }
    }
    let mut offset = 0;
    for line in plain.split_inclusive('\n') {
        let t = line.trim_start();
        if line.len() - t.len() <= 3 && t.starts_with('[') && !t.starts_with("[^") {
            if let Some(close) = t.find("]:") {
                if let Some(d) = t[close + 2..].split_whitespace().next() {
                    found.push((offset, d.trim_start_matches('<').trim_end_matches('>').to_owned()));
                }
            }
        }
        offset += line.len();
    }
    for attr in ["href=\"", "src=\""] {
        for (at, _) in plain.match_indices(attr) {
            let start = at + attr.len();
            if let Some(end) = plain[start..].find('"') {
                found.push((at, plain[start..start + end].to_owned()));
            }
        }
    }
    found.sort();
    found
}

/// GitHub's anchor for a heading's text: the text as rendered, lower case,
/// without punctuation but `-` and `_`, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// A heading's Markdown as text: code spans, links and images by their
/// text, HTML tags dropped.
fn rendered(heading: &str) -> String {
    let mut out = String::new();
    let mut rest = heading;
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            rest = &rest[1..];
            continue;
        }
        if c == '!' && rest[1..].starts_with('[') {
            rest = &rest[1..];
            continue;
        }
        if c == ']' && rest[1..].starts_with('(') {
            // Past the link's destination and title, to its closing `)`.
            let mut depth = 0usize;
            let close = rest[2..]
                .char_indices()
                .find(|&(_, c)| match c {
                    '(' => {
                        depth += 1;
                        false
                    }
                    ')' if depth == 0 => true,
                    ')' => {
                        depth -= 1;
                        false
                    }
                    _ => false,
                })
                .map_or(rest.len(), |(k, _)| 2 + k + 1);
            rest = &rest[close..];
            continue;
        }
        if c == '[' {
            rest = &rest[1..];
            continue;
        }
        if c == '<' {
            if let Some(e) = rest.find('>') {
                rest = &rest[e + 1..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The anchors of a Markdown file: its ATX headings' slugs (repeated ones
/// numbered -1, -2, ... as GitHub does) and explicit HTML ids and names.
fn anchors(text: &str) -> BTreeSet<String> {
    let plain = prose(text);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for line in plain.lines() {
        let t = line.trim_start();
        if line.len() - t.len() > 3 {
            continue;
        }
        let level = t.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&level) || !(t.len() == level || t[level..].starts_with([' ', '\t'])) {
            continue;
        }
        let mut body = t[level..].trim();
        // A closing sequence of #s, after a space.
        let open = body.trim_end_matches('#');
        if open.len() < body.len() && (open.is_empty() || open.ends_with([' ', '\t'])) {
            body = open.trim_end();
        }
        let base = slug(&rendered(body));
        let n = seen.entry(base.clone()).or_insert(0);
        out.insert(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
        *n += 1;
    }
    for attr in ["id=\"", "name=\""] {
        for (at, _) in plain.match_indices(attr) {
            let start = at + attr.len();
            if let Some(end) = plain[start..].find('"') {
                out.insert(plain[start..start + end].to_lowercase());
            }
        }
    }
    out
}

/// `path` without `.` and `..` components; `None` when it climbs above its
/// start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

fn percent_decoded(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// What was checked.
#[derive(Debug, Default)]
struct Checked {
    links: usize,
    anchors: usize,
    paths: usize,
}

/// What is wrong with the relative links of the Markdown files of `root`:
/// one `FILE:LINE: message` each.
fn broken_links(root: &Path) -> Vec<String> {
    broken_links_counted(root, &mut Checked::default())
}

fn broken_links_counted(root: &Path, checked: &mut Checked) -> Vec<String> {
    let mut problems = vec![];
    let mut anchor_cache: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for file in markdown_files(root) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let rel_file = file.strip_prefix(root).unwrap().to_path_buf();
        for (offset, dest) in links(&text) {
            let at = format!("{}:{}", rel_file.display(), line_of(&text, offset));
            if dest.is_empty() || dest.contains("://") || dest.starts_with("mailto:") || dest.starts_with("data:") {
                continue;
            }
            let (path, anchor) = dest.split_once('#').map_or((dest.as_str(), None), |(p, a)| (p, Some(a)));
            let path = percent_decoded(path);
            let target = if path.is_empty() {
                Some(rel_file.clone())
            } else if let Some(from_root) = path.strip_prefix('/') {
                normalize(Path::new(from_root))
            } else {
                normalize(&rel_file.parent().unwrap_or(Path::new("")).join(&path))
            };
            let Some(target) = target else {
                problems.push(format!("{at}: the link {dest} points outside the repository"));
                continue;
            };
            let full = root.join(&target);
            checked.links += 1;
            if !full.exists() {
                problems.push(format!("{at}: the link {dest} points at {}, which does not exist", target.display()));
                continue;
            }
            let Some(anchor) = anchor.filter(|a| !a.is_empty()) else { continue };
            // Anchors of other files (an SVG, source lines) are not checked.
            if full.extension().is_none_or(|e| e != "md") {
                continue;
            }
            checked.anchors += 1;
            let known = anchor_cache
                .entry(target.clone())
                .or_insert_with(|| anchors(&std::fs::read_to_string(&full).unwrap_or_default()));
            if !known.contains(&percent_decoded(anchor).to_lowercase()) {
                problems.push(format!(
                    "{at}: the link {dest}: no heading of {} has the anchor #{anchor}",
                    target.display()
                ));
            }
        }
    }
    problems
}

/// Words that name real files in capitals, never placeholders.
const FILE_WORDS: [&str; 6] = ["README", "MANIFEST", "LICENSE", "CHANGELOG", "CONTRIBUTING", "COPYING"];

/// `component` with its placeholders as `*`: `<...>`, and words in capitals
/// (`FILE`, `PID`, `PART`) but those of [`FILE_WORDS`].
fn placeholders_as_wildcards(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(e) = rest.find('>') {
                out.push('*');
                rest = &rest[e + 1..];
                continue;
            }
        }
        if c.is_ascii_uppercase() && !out.chars().last().is_some_and(|p| p.is_ascii_alphanumeric()) {
            let word: String =
                rest.chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
            let after = rest[word.len()..].chars().next();
            if !after.is_some_and(|a| a.is_ascii_alphanumeric()) && !FILE_WORDS.contains(&word.as_str()) {
                out.push('*');
                rest = &rest[word.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// `a{b,c}d` as `abd` and `acd` (nested and repeated braces too).
fn brace_expanded(path: &str) -> Vec<String> {
    let Some(open) = path.find('{') else { return vec![path.to_owned()] };
    let mut depth = 0;
    let mut parts = vec![];
    let mut start = open + 1;
    for (k, c) in path[open..].char_indices() {
        let k = open + k;
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    parts.push(&path[start..k]);
                    if parts.len() < 2 {
                        return vec![path.to_owned()];
                    }
                    let (head, tail) = (&path[..open], &path[k + 1..]);
                    return parts.iter().flat_map(|p| brace_expanded(&format!("{head}{p}{tail}"))).collect();
                }
            }
            ',' if depth == 1 => {
                parts.push(&path[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    vec![path.to_owned()]
}

/// Whether `name` matches the wildcard `pattern` (`*`, `?`).
fn matches(pattern: &[char], name: &[char]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some('*'), _) => matches(&pattern[1..], name) || (!name.is_empty() && matches(pattern, &name[1..])),
        (Some('?'), Some(_)) => matches(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => matches(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Whether some path under `dir` matches the wildcard components.
fn glob_matches(dir: &Path, components: &[&str], want_dir: bool) -> bool {
    let Some((first, rest)) = components.split_first() else { return !want_dir || dir.is_dir() };
    if *first == "**" {
        if glob_matches(dir, rest, want_dir) {
            return true;
        }
        let Ok(entries) = std::fs::read_dir(dir) else { return false };
        return entries.flatten().any(|e| e.path().is_dir() && glob_matches(&e.path(), components, want_dir));
    }
    if !first.contains(['*', '?']) {
        let next = dir.join(first);
        return next.exists() && glob_matches(&next, rest, want_dir);
    }
    let pattern: Vec<char> = first.chars().collect();
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let name: Vec<char> = e.file_name().to_string_lossy().chars().collect();
        matches(&pattern, &name) && glob_matches(&e.path(), rest, want_dir)
    })
}

/// Whether the repository path named in backticks exists: as it is, or as
/// a glob once its placeholders are wildcards; every alternative of its
/// braces.
fn path_exists(root: &Path, path: &str) -> bool {
    brace_expanded(path).iter().all(|p| {
        let want_dir = p.ends_with('/');
        let literal = root.join(p);
        if literal.exists() && (!want_dir || literal.is_dir()) {
            return true;
        }
        let pattern = placeholders_as_wildcards(p);
        let components: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
        pattern.contains(['*', '?']) && glob_matches(root, &components, want_dir)
    })
}

/// The repository path a word of a code span names, if it names one: it
/// contains a `/` and starts with a top-level directory of the repository,
/// or names a crate's sources (`NAME/src/...`: a crate folder that was
/// renamed or removed must not hide its stale paths);
/// without quotes and punctuation around it and a `:LINE` or `#anchor`
/// after it.
fn repository_path(word: &str, top: &BTreeSet<String>) -> Option<String> {
    let w = word.trim_start_matches(['\'', '"', '(', '<', '[']).trim_end_matches(['\'', '"', ')', '>', ',', ';', ']']);
    let w = w.split('#').next().unwrap_or(w);
    // :LINE, :LINE:COL, :FROM-TO
    let mut w = w;
    while let Some((head, tail)) = w.rsplit_once(':') {
        if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == '-') {
            w = head;
        } else {
            break;
        }
    }
    let w = w.trim_end_matches(['.', ':']);
    if !w.contains('/') || w.contains("...") || w.contains("://") {
        return None;
    }
    let mut parts = w.split('/');
    let first = parts.next()?;
    let crate_sources = parts.next() == Some("src") && !first.is_empty() && !first.starts_with('.');
    (top.contains(first) || crate_sources).then(|| w.to_owned())
}

/// The top-level directories of the repository that paths may start with:
/// not the skipped ones (build outputs), which backticks may name freely.
fn top_level(root: &Path) -> BTreeSet<String> {
    let skip = skipped(root);
    std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir() && !skip.contains(&e.path()) && e.file_name() != "target")
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The repository paths named in backticks in the Markdown files of `root`
/// that do not exist: `FILE:LINE: message` each.
fn missing_paths(root: &Path) -> Vec<String> {
    missing_paths_counted(root, &mut Checked::default())
}

fn missing_paths_counted(root: &Path, checked: &mut Checked) -> Vec<String> {
    let top = top_level(root);
    let skip = skipped(root);
    let mut problems = vec![];
    for file in markdown_files(root) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let rel_file = file.strip_prefix(root).unwrap();
        let (spans, _) = code_spans(&prose(&text));
        for (offset, content) in spans {
            for word in content.split_whitespace() {
                let Some(path) = repository_path(word, &top) else { continue };
                // Under a build output: made by a build, not kept.
                if skip.iter().any(|s| root.join(&path).starts_with(s)) {
                    continue;
                }
                checked.paths += 1;
                if !path_exists(root, &path) {
                    problems.push(format!(
                        "{}:{}: `{path}` does not exist",
                        rel_file.display(),
                        line_of(&text, offset)
                    ));
                }
            }
        }
    }
    problems
}

/// The text files of `root` that name a path in the directory beside the
/// repository: `FILE:LINE` each.
fn outside_references(root: &Path) -> Vec<String> {
    // Spelled in two pieces, so that this file does not name it.
    let needle = format!("{}/{}", "..", "shared");
    let text_file = |f: &Path| {
        let rel = f.strip_prefix(root).unwrap();
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        matches!(ext, "md" | "rs" | "c" | "h" | "py" | "toml" | "sh")
            || rel.starts_with("scripts")
            || rel.starts_with(".ci")
    };
    let mut problems = vec![];
    for file in files(root).into_iter().filter(|f| text_file(f)) {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        for (n, line) in text.lines().enumerate() {
            if line.contains(&needle) {
                problems.push(format!("{}:{}: {}", file.strip_prefix(root).unwrap().display(), n + 1, line.trim()));
            }
        }
    }
    problems
}

fn assert_none(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what} ({}):\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn every_relative_markdown_link_and_anchor_resolves() {
    let walked = markdown_files(root());
    for page in ["README.md", "docs/guide/policy.md", "docs/bench/README.md", "fuzz/README.md"] {
        assert!(walked.contains(&root().join(page)), "{page} was not walked");
    }
    let mut checked = Checked::default();
    assert_none("broken links", &broken_links_counted(root(), &mut checked));
    // A parser that found nothing would pass too.
    assert!(checked.links >= 50 && checked.anchors >= 5, "only {checked:?}");
}

#[test]
fn every_repository_path_in_backticks_exists() {
    let mut checked = Checked::default();
    assert_none("paths named in backticks that do not exist", &missing_paths_counted(root(), &mut checked));
    assert!(checked.paths >= 100, "only {checked:?}");
}

#[test]
fn no_file_refers_to_a_path_outside_the_repository() {
    assert_none("references outside the repository", &outside_references(root()));
}

// The checker itself, on a repository made for it.

fn fixture(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = ipc_offload_tests::scratch(name);
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn the_checker_finds_broken_links_anchors_and_paths() {
    let page = "# Guide\n\n## The `dd` pipeline (v3)\n\n## Running: a/b\n\n## Running: a/b\n\n\
                [ok](../README.md) [dir](../src/) [image](img.svg \"title\") [self](#the-dd-pipeline-v3)\n\
                [twice](#running-ab-1) [other](../README.md#top-heading)\n\
                [gone](missing.md) [bad anchor](../README.md#nowhere) [out](../../elsewhere.md)\n\
                `src/lib.rs` `src/lib.rs:12` `src/*.rs` `src/FILE.PID` `docs/{guide,img}.md` `target/release/x`\n\
                `src/gone.rs` `docs/README.md` `cargo test -p x --test y` `/tmp/file` `src/...`\n\n\
                ```sh\n[fenced](nowhere.md) `src/fenced.rs`\n```\n\
                <!-- [commented](nowhere.md) -->\n";
    let dir = fixture(
        "docs-links-fixture",
        &[
            ("README.md", "# Top heading\n\nSee [the guide](docs/guide.md#running-ab).\n"),
            ("docs/guide.md", page),
            ("docs/img.svg", "<svg/>"),
            ("docs/img.md", ""),
            ("src/lib.rs", "// ok\n"),
            ("src/x.PID", ""),
            ("notes.txt", &format!("{}/{}/x", "..", "shared")),
            ("tool.rs", &format!("// see {}/{}/x.md\n", "..", "shared")),
        ],
    );
    let links = broken_links(&dir);
    assert_eq!(links.len(), 3, "{links:#?}");
    assert!(links[0].starts_with("docs/guide.md:11: the link missing.md"), "{links:#?}");
    assert!(links[1].contains("../README.md#nowhere") && links[1].contains("no heading"), "{links:#?}");
    assert!(links[2].contains("outside the repository"), "{links:#?}");
    let paths = missing_paths(&dir);
    assert_eq!(
        paths,
        ["docs/guide.md:13: `src/gone.rs` does not exist", "docs/guide.md:13: `docs/README.md` does not exist"]
    );
    assert_eq!(outside_references(&dir), [format!("tool.rs:1: // see {}/{}/x.md", "..", "shared")]);
}

#[test]
fn slugs_are_githubs() {
    assert_eq!(slug(&rendered("A/B comparisons")), "ab-comparisons");
    assert_eq!(slug(&rendered("The slow path (`runtime/src/dispatch.rs`)")), "the-slow-path-runtimesrcdispatchrs");
    assert_eq!(slug(&rendered("What is intercepted, and what cannot be")), "what-is-intercepted-and-what-cannot-be");
    assert_eq!(slug(&rendered("[Link](x.md) and **bold**")), "link-and-bold");
    assert_eq!(slug(&rendered("memcpy")), "memcpy");
    let a = anchors("# T\n## Same\n## Same\n```\n## not a heading\n```\n## Closed ##\n<a name=\"Here\"></a>\n");
    assert_eq!(a, ["closed", "here", "same", "same-1", "t"].map(String::from).into_iter().collect());
}

#[test]
fn paths_with_placeholders_globs_and_suffixes() {
    let top: BTreeSet<String> = ["docs", "tests", ".ci"].map(String::from).into_iter().collect();
    assert_eq!(repository_path("tests/c/foo.c:12:3", &top).as_deref(), Some("tests/c/foo.c"));
    assert_eq!(repository_path("(docs/a.md),", &top).as_deref(), Some("docs/a.md"));
    assert_eq!(repository_path(".ci/run", &top).as_deref(), Some(".ci/run"));
    assert_eq!(repository_path("docs/x.md#part", &top).as_deref(), Some("docs/x.md"));
    assert_eq!(repository_path("lib/ipc-offload/x.so", &top), None);
    // A crate folder that no longer exists still names a repository path.
    assert_eq!(repository_path("gone/src/x.rs", &top).as_deref(), Some("gone/src/x.rs"));
    assert_eq!(repository_path("/tmp/x", &top), None);
    assert_eq!(repository_path("https://docs/x", &top), None);
    assert_eq!(placeholders_as_wildcards("docs/bench/suite-PART.json"), "docs/bench/suite-*.json");
    assert_eq!(placeholders_as_wildcards("fuzz/artifacts/<target>/<file>"), "fuzz/artifacts/*/*");
    assert_eq!(placeholders_as_wildcards("docs/README.md"), "docs/README.md");
    assert_eq!(placeholders_as_wildcards("tests/c/wqD.Q"), "tests/c/wqD.*");
    assert_eq!(brace_expanded("docs/{a,b{c,d}}.md"), ["docs/a.md", "docs/bc.md", "docs/bd.md"]);
    assert!(matches(&"suite-*.json".chars().collect::<Vec<_>>(), &"suite-dd.json".chars().collect::<Vec<_>>()));
}
