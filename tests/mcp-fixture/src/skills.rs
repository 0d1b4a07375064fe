//! One skill served through the Skills extension (SEP-2640,
//! `io.modelcontextprotocol/skills`): a directory of files under
//! `skill://conformance-guide/`, enumerated by `skills/list`, described by
//! `skills/get`, browsed with `resources/directory/read` and read with
//! `resources/read`.

use rmcp::{
    ErrorData,
    model::{
        DIRECTORY_MIME_TYPE, ListResourcesResult, ReadResourceResult, Resource, ResourceContents, Skill,
        SkillFrontmatter, SkillResource, SkillResources,
    },
};
use serde_json::json;

const SKILL_NAME: &str = "conformance-guide";
const SKILL_DESCRIPTION: &str = "How to run the MCP conformance suite against this fixture.";
const ROOT: &str = "skill://conformance-guide";
pub(crate) const SKILL_MD_URI: &str = "skill://conformance-guide/SKILL.md";

/// The files of the skill: path below the skill root, MIME type, content.
const FILES: [(&str, &str, &str); 3] = [
    (
        "SKILL.md",
        "text/markdown",
        "---\n\
         name: conformance-guide\n\
         description: How to run the MCP conformance suite against this fixture.\n\
         ---\n\
         \n\
         # Conformance guide\n\
         \n\
         1. Start the fixture with `mcp-fixture --host-policy loopback`.\n\
         2. Run `conformance server --url <fixture url> --suite all`.\n\
         3. Compare the summary with `reference/checklist.md`.\n",
    ),
    (
        "reference/checklist.md",
        "text/markdown",
        "# Checklist\n\n- Every scenario passes.\n- Extension scenarios run at 2026-07-28.\n",
    ),
    (
        "examples/run.sh",
        "text/x-shellscript",
        "#!/bin/sh\nnpx @modelcontextprotocol/conformance server --url \"$1\" --suite all\n",
    ),
];

fn file_uri(path: &str) -> String {
    format!("{ROOT}/{path}")
}

/// The skill's entry as `skills/list` and `skills/get` report it.
pub(crate) fn skill() -> Skill {
    let files = FILES
        .iter()
        .map(|(path, _, content)| SkillResource::from_bytes(file_uri(path), content.as_bytes()))
        .collect();
    Skill::new(
        SKILL_MD_URI,
        SkillFrontmatter::new(SKILL_NAME, SKILL_DESCRIPTION),
        SkillResources::Files(files),
    )
}

/// The `SKILL.md` as a listed resource; its name and description repeat the
/// frontmatter, as SEP-2640 recommends.
pub(crate) fn skill_md_resource() -> Resource {
    Resource::new(SKILL_MD_URI, SKILL_NAME)
        .with_description(SKILL_DESCRIPTION)
        .with_mime_type("text/markdown")
}

/// The contents of a skill file, if `uri` names one.
pub(crate) fn read_file(uri: &str) -> Option<ReadResourceResult> {
    let path = uri.strip_prefix(ROOT)?.strip_prefix('/')?;
    let (_, mime_type, content) = FILES.iter().find(|(file, _, _)| *file == path)?;
    Some(ReadResourceResult::new(vec![
        ResourceContents::text(*content, uri).with_mime_type(*mime_type),
    ]))
}

/// The direct children of the directory `uri`, or `-32602` if `uri` is not a
/// directory of the skill.
pub(crate) fn read_directory(uri: &str) -> Result<ListResourcesResult, ErrorData> {
    let not_a_directory =
        || ErrorData::invalid_params(format!("{uri} is not a directory"), Some(json!({ "uri": uri })));
    let prefix = match uri.trim_end_matches('/') {
        ROOT => String::new(),
        below => format!(
            "{}/",
            below
                .strip_prefix(ROOT)
                .and_then(|p| p.strip_prefix('/'))
                .ok_or_else(not_a_directory)?
        ),
    };
    let mut children: Vec<Resource> = Vec::new();
    for (path, mime_type, content) in FILES {
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        let child = match rest.split_once('/') {
            // A deeper file: its first segment is a subdirectory.
            Some((directory, _)) => Resource::new(file_uri(&format!("{prefix}{directory}")), directory)
                .with_mime_type(DIRECTORY_MIME_TYPE),
            None => Resource::new(file_uri(path), rest)
                .with_mime_type(mime_type)
                .with_size(content.len() as u64),
        };
        if !children.iter().any(|listed| listed.uri == child.uri) {
            children.push(child);
        }
    }
    if children.is_empty() {
        return Err(not_a_directory());
    }
    Ok(ListResourcesResult::with_all_items(children))
}
