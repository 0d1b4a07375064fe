//! The first validation of a SQL tool's statement, by a SQL parser (sqlparser, PostgreSQL
//! dialect), before the backend ever sees it.
//!
//! A tool's statement is exactly one `SELECT` (CTEs allowed), `INSERT`, `UPDATE` or `DELETE`. It
//! names its parameters `:name` (a colon immediately followed by an identifier; `::` stays a
//! cast); [`parse`] rewrites them to PostgreSQL's positional `$1, $2, …` (one position per
//! distinct name) and validates the rewritten text, which is the text the backend runs. Refused:
//! utility statements (`SET`, `RESET`, `COPY`, DDL, …), transaction control, several statements,
//! `SELECT … INTO`, `MERGE`, data-modifying CTEs and row locks in a read tool, positional (`$1`)
//! or `?` placeholders in the source, and any function outside the allowlist
//! ([`DEFAULT_FUNCTIONS`] plus what the backend's admin adds), wherever it is called: in an
//! expression, in `FROM`, in a `LATERAL` join, in a CTE.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, FunctionArguments, ObjectName, Query, SetExpr, Statement, TableFactor, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer};

/// Longest statement accepted, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024;
/// Most distinct parameters a statement may name.
pub const MAX_PARAMETERS: usize = 64;

/// Functions every tool may call: side-effect-free built-ins, and the accessors of the
/// `gatehouse` schema. Names are compared lower-cased, with their schema when the call has one
/// (`gatehouse.subject`, `pg_catalog.lower`). A backend's admin can allow more.
pub const DEFAULT_FUNCTIONS: &[&str] = &[
    // aggregates
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "bool_and",
    "bool_or",
    "every",
    "string_agg",
    "array_agg",
    "json_agg",
    "jsonb_agg",
    "json_object_agg",
    "jsonb_object_agg",
    "stddev",
    "variance",
    // conditionals and comparisons
    "coalesce",
    "nullif",
    "greatest",
    "least",
    // strings
    "lower",
    "upper",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "substr",
    "substring",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "lpad",
    "rpad",
    "concat",
    "concat_ws",
    "replace",
    "split_part",
    "starts_with",
    "strpos",
    "position",
    "left",
    "right",
    "initcap",
    "reverse",
    "repeat",
    "format",
    "md5",
    "to_char",
    "to_number",
    "to_date",
    "to_timestamp",
    "regexp_replace",
    "regexp_match",
    "regexp_matches",
    "string_to_array",
    "array_to_string",
    "translate",
    // numbers
    "abs",
    "ceil",
    "ceiling",
    "floor",
    "round",
    "trunc",
    "mod",
    "power",
    "sqrt",
    "sign",
    "div",
    "random",
    // dates and times
    "now",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "date_trunc",
    "date_part",
    "extract",
    "age",
    "make_date",
    "make_interval",
    "make_timestamp",
    "make_timestamptz",
    "to_timestamp",
    "date_bin",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    // arrays and JSON
    "array_length",
    "cardinality",
    "array_position",
    "array_positions",
    "array_append",
    "array_prepend",
    "array_cat",
    "array_remove",
    "unnest",
    "generate_series",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "to_json",
    "to_jsonb",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "json_array_elements",
    "json_array_elements_text",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_object_keys",
    "jsonb_array_length",
    "json_array_length",
    "jsonb_typeof",
    "jsonb_set",
    "jsonb_strip_nulls",
    "row_to_json",
    "jsonb_path_query",
    "jsonb_path_exists",
    // ids
    "gen_random_uuid",
    // window functions
    "row_number",
    "rank",
    "dense_rank",
    "percent_rank",
    "cume_dist",
    "ntile",
    "lag",
    "lead",
    "first_value",
    "last_value",
    "nth_value",
    // the caller context installed on the backend (docs/hosted-sql.md)
    "gatehouse.org",
    "gatehouse.endpoint",
    "gatehouse.subject",
    "gatehouse.subject_kind",
    "gatehouse.email",
    "gatehouse.scopes",
    "gatehouse.has_scope",
    "gatehouse.claim",
    "gatehouse.tool",
];

/// Whether a tool only reads or may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Runs in a `READ ONLY` transaction; the statement must be a `SELECT`.
    Read,
    /// `INSERT`, `UPDATE` or `DELETE` (a `SELECT` with a data-modifying CTE too).
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            _ => None,
        }
    }
}

/// What kind of statement a tool runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
}

/// A statement that passed the parser: the text the backend runs and what it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedStatement {
    /// The statement with `:name` rewritten to `$1, $2, …`.
    pub positional_sql: String,
    /// Parameter names in position order (`params[0]` is `$1`).
    pub params: Vec<String>,
    pub kind: StatementKind,
    /// Relations named in the statement (lower-cased unless quoted; `schema.table` when
    /// qualified), CTE names excluded. The backend resolves them (views included).
    pub relations: BTreeSet<String>,
    /// Functions called (lower-cased, qualified when the call was).
    pub functions: BTreeSet<String>,
}

/// Why a statement was refused. The text is for the tool's author.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StatementError(pub String);

fn refuse<T>(why: impl Into<String>) -> Result<T, StatementError> {
    Err(StatementError(why.into()))
}

/// A function allowlist: the defaults plus the backend's own additions.
#[derive(Clone, Debug, Default)]
pub struct FunctionAllowlist {
    extra: BTreeSet<String>,
}

impl FunctionAllowlist {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(extra: I) -> Self {
        Self {
            extra: extra
                .into_iter()
                .map(|s| s.as_ref().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether `name` (lower-cased, possibly schema-qualified) may be called. A built-in may be
    /// called qualified with `pg_catalog`.
    pub fn allows(&self, name: &str) -> bool {
        let unqualified = name.strip_prefix("pg_catalog.").unwrap_or(name);
        DEFAULT_FUNCTIONS.contains(&unqualified)
            || self.extra.contains(name)
            || self.extra.contains(unqualified)
    }
}

/// Checks the name an admin adds to a backend's allowlist: `name` or `schema.name`, identifiers
/// only.
pub fn valid_function_name(name: &str) -> bool {
    let ident = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    match name.split_once('.') {
        Some((schema, func)) => ident(schema) && ident(func),
        None => ident(name),
    }
}

/// Parses and validates a tool's statement for `access`, with `allow` deciding which functions
/// may be called.
pub fn parse(
    sql: &str,
    access: Access,
    allow: &FunctionAllowlist,
) -> Result<ParsedStatement, StatementError> {
    check_size(sql)?;
    let (positional_sql, params) = rewrite_named_parameters(sql)?;
    let checked = check(&positional_sql, access, allow)?;
    if checked.placeholders != positional_set(params.len()) {
        return refuse("the statement's parameters could not be matched to their names");
    }
    Ok(ParsedStatement {
        positional_sql,
        params,
        kind: checked.kind,
        relations: checked.relations,
        functions: checked.functions,
    })
}

/// Validates a statement already in positional form (as stored in a snapshot) and returns how
/// many parameters it takes.
pub fn parse_positional(
    sql: &str,
    access: Access,
    allow: &FunctionAllowlist,
) -> Result<usize, StatementError> {
    check_size(sql)?;
    let checked = check(sql, access, allow)?;
    let n = checked.placeholders.len();
    if checked.placeholders != positional_set(n) {
        return refuse("the statement's parameters are not $1..$n");
    }
    Ok(n)
}

fn positional_set(n: usize) -> BTreeSet<String> {
    (1..=n).map(|i| format!("${i}")).collect()
}

fn check_size(sql: &str) -> Result<(), StatementError> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return refuse(format!(
            "the statement must be at most {MAX_STATEMENT_BYTES} bytes"
        ));
    }
    if sql.contains('\0') {
        return refuse("the statement contains a NUL character");
    }
    Ok(())
}

struct Checked {
    kind: StatementKind,
    relations: BTreeSet<String>,
    functions: BTreeSet<String>,
    placeholders: BTreeSet<String>,
}

fn check(positional_sql: &str, access: Access, allow: &FunctionAllowlist) -> Result<Checked, StatementError> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, positional_sql)
        .or_else(|e| refuse(format!("the statement does not parse: {e}")))?;
    if statements.len() != 1 {
        return refuse(format!(
            "a tool runs exactly one statement (found {})",
            statements.len()
        ));
    }
    let statement = statements.remove(0);
    let kind = match &statement {
        Statement::Query(q) => match q.body.as_ref() {
            SetExpr::Insert(_) => StatementKind::Insert,
            SetExpr::Update(_) => StatementKind::Update,
            SetExpr::Delete(_) => StatementKind::Delete,
            SetExpr::Merge(_) => return refuse("MERGE is not allowed"),
            _ => StatementKind::Select,
        },
        Statement::Insert(_) => StatementKind::Insert,
        Statement::Update(_) => StatementKind::Update,
        Statement::Delete(_) => StatementKind::Delete,
        other => {
            return refuse(format!(
                "only SELECT, INSERT, UPDATE or DELETE may be a tool's statement, not {}",
                statement_name(other)
            ));
        }
    };
    if access == Access::Read && kind != StatementKind::Select {
        return refuse("a read tool's statement must be a SELECT; mark the tool as a write tool");
    }
    let mut check = Checker {
        access,
        allow,
        depth: 0,
        relations: BTreeSet::new(),
        ctes: BTreeSet::new(),
        table_functions: BTreeSet::new(),
        functions: BTreeSet::new(),
        placeholders: BTreeSet::new(),
    };
    if let ControlFlow::Break(why) = statement.visit(&mut check) {
        return Err(why);
    }
    let relations = check
        .relations
        .iter()
        .filter(|r| !check.ctes.contains(*r) && !check.table_functions.contains(*r))
        .cloned()
        .collect();
    Ok(Checked {
        kind,
        relations,
        functions: check.functions,
        placeholders: check.placeholders,
    })
}

fn statement_name(statement: &Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    let name = words.join(" ").to_ascii_uppercase();
    name.chars().take(40).collect()
}

/// Rewrites `:name` placeholders to `$k` (the same name always gets the same position), using the
/// PostgreSQL tokenizer so that strings, quoted identifiers, comments and dollar-quoted text are
/// left alone. Refuses `$1`/`?` placeholders in the source.
pub fn rewrite_named_parameters(sql: &str) -> Result<(String, Vec<String>), StatementError> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .or_else(|e| refuse(format!("the statement does not parse: {e}")))?;
    let line_starts = line_start_offsets(sql);
    let offset = |line: u64, column: u64| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let col = usize::try_from(column).ok()?.checked_sub(1)?;
        // Columns count characters.
        sql[start..]
            .char_indices()
            .nth(col)
            .map(|(i, _)| start + i)
            .or_else(|| (sql[start..].chars().count() == col).then_some(sql.len()))
    };
    let mut names: Vec<String> = Vec::new();
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].token {
            Token::Placeholder(p) => {
                return refuse(format!(
                    "name parameters `:name`; `{}` placeholders are not accepted",
                    p.chars().take(20).collect::<String>()
                ));
            }
            Token::Colon => {
                let Some(next) = tokens.get(i + 1) else {
                    i += 1;
                    continue;
                };
                let Token::Word(word) = &next.token else {
                    i += 1;
                    continue;
                };
                if word.quote_style.is_some() {
                    i += 1;
                    continue;
                }
                let (Some(start), Some(word_start), Some(end)) = (
                    offset(tokens[i].span.start.line, tokens[i].span.start.column),
                    offset(next.span.start.line, next.span.start.column),
                    offset(next.span.end.line, next.span.end.column),
                ) else {
                    return refuse("the statement's parameters could not be located");
                };
                // A parameter is `:` immediately followed by its name.
                if word_start != start + 1 {
                    i += 1;
                    continue;
                }
                let name = &sql[word_start..end];
                if !valid_parameter_name(name) {
                    return refuse(format!(
                        "parameter names are lower-case identifiers (`:order_id`), not `:{}`",
                        name.chars().take(40).collect::<String>()
                    ));
                }
                let position = match names.iter().position(|n| n == name) {
                    Some(p) => p + 1,
                    None => {
                        if names.len() == MAX_PARAMETERS {
                            return refuse(format!(
                                "a statement may name at most {MAX_PARAMETERS} parameters"
                            ));
                        }
                        names.push(name.to_owned());
                        names.len()
                    }
                };
                out.push_str(&sql[copied..start]);
                out.push_str(&format!("${position}"));
                copied = end;
                i += 2;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    Ok((out, names))
}

/// A parameter name: a lower-case identifier of at most 63 characters.
pub fn valid_parameter_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn line_start_offsets(s: &str) -> Vec<usize> {
    let mut starts = vec![0];
    starts.extend(s.match_indices('\n').map(|(i, _)| i + 1));
    starts
}

/// An object name as PostgreSQL would fold it: unquoted parts lower-cased, joined with `.`.
fn folded(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) if ident.quote_style.is_some() => ident.value.clone(),
            Some(ident) => ident.value.to_lowercase(),
            None => part.to_string().to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

struct Checker<'a> {
    access: Access,
    allow: &'a FunctionAllowlist,
    /// Statements entered (1 = the top-level one).
    depth: usize,
    relations: BTreeSet<String>,
    ctes: BTreeSet<String>,
    table_functions: BTreeSet<String>,
    functions: BTreeSet<String>,
    placeholders: BTreeSet<String>,
}

impl Checker<'_> {
    fn function(&mut self, name: &ObjectName) -> ControlFlow<StatementError> {
        let name = folded(name);
        if !self.allow.allows(&name) {
            return ControlFlow::Break(StatementError(format!(
                "the function `{}` is not allowed in tools (the backend's admin can allow it)",
                name.chars().take(80).collect::<String>()
            )));
        }
        self.functions.insert(name);
        ControlFlow::Continue(())
    }
}

impl Visitor for Checker<'_> {
    type Break = StatementError;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Self::Break> {
        self.depth += 1;
        if self.depth > 1 {
            // A statement inside the statement: a data-modifying CTE or subquery.
            match statement {
                Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_)
                    if self.access == Access::Write => {}
                Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                    return ControlFlow::Break(StatementError(
                        "a read tool cannot modify data (a data-modifying CTE); mark the tool as a write tool".into(),
                    ));
                }
                _ => {
                    return ControlFlow::Break(StatementError(
                        "only SELECT, INSERT, UPDATE or DELETE may appear in a tool's statement".into(),
                    ));
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _statement: &Statement) -> ControlFlow<Self::Break> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Self::Break> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let name = match cte.alias.name.quote_style {
                    Some(_) => cte.alias.name.value.clone(),
                    None => cte.alias.name.value.to_lowercase(),
                };
                self.ctes.insert(name);
            }
        }
        if !query.locks.is_empty() && self.access == Access::Read {
            return ControlFlow::Break(StatementError(
                "a read tool cannot lock rows (FOR UPDATE/SHARE)".into(),
            ));
        }
        if query.for_clause.is_some() || query.settings.is_some() || query.format_clause.is_some() {
            return ControlFlow::Break(StatementError("this clause is not PostgreSQL".into()));
        }
        if !query.pipe_operators.is_empty() {
            return ControlFlow::Break(StatementError("pipe syntax is not PostgreSQL".into()));
        }
        match query.body.as_ref() {
            SetExpr::Merge(_) => ControlFlow::Break(StatementError("MERGE is not allowed".into())),
            SetExpr::Select(select) if select.into.is_some() => ControlFlow::Break(StatementError(
                "SELECT … INTO creates a table: not allowed".into(),
            )),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Self::Break> {
        self.relations.insert(folded(relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Self::Break> {
        match factor {
            TableFactor::Table { name, args, .. } => {
                if args.is_some() {
                    self.table_functions.insert(folded(name));
                    return self.function(name);
                }
                ControlFlow::Continue(())
            }
            TableFactor::Function { name, .. } => {
                self.table_functions.insert(folded(name));
                self.function(name)
            }
            TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::TableFunction { .. } => ControlFlow::Continue(()),
            _ => ControlFlow::Break(StatementError(
                "this kind of FROM item is not allowed in tools".into(),
            )),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Self::Break> {
        match expr {
            Expr::Function(f) => {
                if let FunctionArguments::Subquery(_) = f.parameters {
                    return ControlFlow::Break(StatementError(
                        "this function syntax is not PostgreSQL".into(),
                    ));
                }
                self.function(&f.name)
            }
            Expr::Value(v) => {
                if let Value::Placeholder(p) = &v.value {
                    self.placeholders.insert(p.clone());
                }
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests;
