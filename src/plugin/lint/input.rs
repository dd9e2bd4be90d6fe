//! The manifests `lint` reads: files, directories (their .yaml, .yml and .json files, recursing with
//! -R, as kubectl does) and `-` for standard input, each split into its YAML documents.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// One YAML document of one file: `index` counts the file's documents from 1, empty ones included,
/// so `FILE:3` is the third document as a reader counts them.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub file: String,
    pub index: usize,
    /// The document, or why it could not be read as YAML.
    pub value: std::result::Result<Value, String>,
}

/// Reads every source in order; `stdin` stands for `-`.
pub fn load(sources: &[String], recursive: bool, stdin: &mut dyn Read) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    for source in sources {
        if source == "-" {
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .map_err(|e| Error::Usage(format!("cannot read standard input: {e}")))?;
            docs.extend(split("STDIN", &text));
            continue;
        }
        for file in files(Path::new(source), recursive)? {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| Error::Usage(format!("cannot read {}: {e}", file.display())))?;
            docs.extend(split(&file.display().to_string(), &text));
        }
    }
    Ok(docs)
}

/// A file, or a directory's manifests in name order (and its subdirectories' with `recursive`).
fn files(path: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).map_err(|_| Error::Usage(format!("the path {:?} does not exist", path)))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let read = std::fs::read_dir(path).map_err(|e| Error::Usage(format!("cannot list {}: {e}", path.display())))?;
    let mut entries: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    let mut out = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                out.extend(files(&entry, true)?);
            }
        } else if entry
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            out.push(entry);
        }
    }
    Ok(out)
}

/// The documents of one YAML stream. A syntax error ends the file: what follows cannot be trusted
/// to be split where the author meant.
pub fn split(file: &str, text: &str) -> Vec<Document> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc).map_err(|e| format!("not valid YAML: {e}"));
        let failed = value.is_err();
        out.push(Document {
            file: file.to_string(),
            index: i + 1,
            value,
        });
        if failed {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_counted_from_one_empty_ones_included() {
        let docs = split("f.yaml", "# head\n---\na: 1\n---\n---\nb: 2\n");
        let got: Vec<(usize, Value)> = docs.into_iter().map(|d| (d.index, d.value.unwrap())).collect();
        assert_eq!(
            got,
            vec![
                (1, serde_json::json!({"a": 1})),
                (2, Value::Null),
                (3, serde_json::json!({"b": 2}))
            ]
        );
    }

    #[test]
    fn a_syntax_error_is_reported_on_its_document_and_ends_the_file() {
        let docs = split("f.yaml", "a: 1\n---\nb: [1\n---\nc: 3\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].index, 2);
        let err = docs[1].value.clone().unwrap_err();
        assert!(err.starts_with("not valid YAML: "), "{err}");
    }

    #[test]
    fn directories_give_their_manifests_in_order_and_recurse_only_when_asked() {
        let dir = std::env::temp_dir().join(format!("kaizen-lint-input-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for (name, body) in [
            ("b.yaml", "b: 1"),
            ("a.yml", "a: 1"),
            ("notes.txt", "x"),
            ("sub/c.json", "{\"c\": 1}"),
        ] {
            std::fs::write(dir.join(name), body).unwrap();
        }
        let names = |recursive| {
            let docs = load(&[dir.display().to_string()], recursive, &mut std::io::empty()).unwrap();
            docs.iter()
                .map(|d| d.file.rsplit('/').next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(false), ["a.yml", "b.yaml"]);
        assert_eq!(names(true), ["a.yml", "b.yaml", "c.json"]);
        let mut stdin = "x: 1\n".as_bytes();
        let docs = load(&["-".into()], false, &mut stdin).unwrap();
        assert_eq!(docs[0].file, "STDIN");
        let missing = load(
            &[dir.join("nope.yaml").display().to_string()],
            false,
            &mut std::io::empty(),
        );
        assert!(matches!(missing, Err(Error::Usage(m)) if m.contains("does not exist")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
