//! Lists in pages when `FixtureOptions::page_size` is set. A cursor is `<instance tag>:<index of
//! the page's first item>`; the tag is random per fixture, so a cursor handed to the wrong
//! instance (a gateway mixing up its upstreams' cursors) is refused.

use rmcp::ErrorData;

use crate::state::FixtureState;

/// One page of a list.
pub(crate) struct Page<T> {
    pub(crate) items: Vec<T>,
    pub(crate) next_cursor: Option<String>,
}

impl FixtureState {
    /// The page of `all` that `cursor` names (the first without one).
    pub(crate) fn page<T>(&self, all: Vec<T>, cursor: Option<&str>) -> Result<Page<T>, ErrorData> {
        let Some(size) = self.options.page_size.filter(|size| *size > 0) else {
            return Ok(Page {
                items: all,
                next_cursor: None,
            });
        };
        let start = match cursor {
            None => 0,
            Some(cursor) => cursor
                .strip_prefix(self.cursor_tag.as_str())
                .and_then(|rest| rest.strip_prefix(':'))
                .and_then(|index| index.parse::<usize>().ok())
                .filter(|index| *index <= all.len())
                .ok_or_else(|| ErrorData::invalid_params(format!("unknown cursor {cursor}"), None))?,
        };
        let end = start.saturating_add(size).min(all.len());
        let next_cursor = (end < all.len()).then(|| format!("{}:{end}", self.cursor_tag));
        Ok(Page {
            items: all.into_iter().skip(start).take(size).collect(),
            next_cursor,
        })
    }
}
