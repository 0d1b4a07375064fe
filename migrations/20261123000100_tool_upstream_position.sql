-- Where each upstream tool stood in its server's latest complete `tools/list` (1 = first), so an
-- endpoint lists tools in the order their servers list them instead of by name. Clients and
-- test harnesses often treat the first tool as the server's main one. NULL for hosted SQL tools
-- and for tools not seen since this column was added; those come after the positioned ones,
-- by name. Written on every sync; a change of order is published like any other change an
-- endpoint's clients can see.
ALTER TABLE tools ADD COLUMN upstream_position integer CHECK (upstream_position > 0);
