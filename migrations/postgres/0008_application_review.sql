-- Applications are reviewed (资格审核) before they count, and a second application for
-- the same child is kept (both are then in conflict for the organiser) instead of being
-- refused: a refusal told anyone whether a child had applied.
ALTER TABLE draw_applications DROP CONSTRAINT IF EXISTS draw_applications_draw_id_child_key_key;
CREATE INDEX draw_applications_child ON draw_applications(draw_id, child_key);
-- `pending`, `verified` or `rejected` (a conflict is computed, not stored).
ALTER TABLE draw_applications ADD COLUMN review TEXT NOT NULL DEFAULT 'pending';
-- Why it was rejected (shown to the parent with the receipt).
ALTER TABLE draw_applications ADD COLUMN review_reason TEXT;
ALTER TABLE draw_applications ADD COLUMN reviewed_by TEXT;
ALTER TABLE draw_applications ADD COLUMN reviewed_at BIGINT;
-- Applications of draws already closed were accepted without a review: they count.
UPDATE draw_applications SET review = 'verified'
 WHERE draw_id IN (SELECT id FROM draws WHERE state NOT IN ('draft', 'open'));
