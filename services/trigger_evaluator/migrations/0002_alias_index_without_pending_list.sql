-- Every inbound email event probes the alias index. With GIN's default fast update, new
-- enrollments pile up in a pending list that each probe reads in full until a vacuum
-- merges it: milliseconds per probe under a steady stream of enrollments, and a reason
-- for the planner to give up the index for a sequential scan. Adding to the index
-- directly costs an enrollment insert little (most have no alias at all).
ALTER INDEX enrollments_by_alias SET (fastupdate = off);
SELECT gin_clean_pending_list('enrollments_by_alias');
