-- When an ended event was last reopened (an accidental End undone within the reopen
-- window). Orders status changes between nodes: a reopen is newer than the end it undoes.
ALTER TABLE events ADD COLUMN reopened_at BIGINT;
