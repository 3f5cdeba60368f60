-- Applications are reviewed (资格审核) before they count, and a second application for
-- the same child is kept (both are then in conflict for the organiser) instead of being
-- refused: a refusal told anyone whether a child had applied. SQLite cannot drop a table
-- constraint, so the table is rebuilt without UNIQUE (draw_id, child_key).
CREATE TABLE draw_applications_reviewed (
    draw_id     TEXT   NOT NULL REFERENCES draws(id) ON DELETE CASCADE,
    app         TEXT   NOT NULL,
    -- HMAC-SHA-256 of the child's ID number under the records key: finds an
    -- application by ID number without storing it. Not unique: two applications for one
    -- child are a conflict the organiser resolves.
    child_key   TEXT   NOT NULL,
    -- The child's ID number, name and salt, sealed (XChaCha20-Poly1305, records key).
    sealed      TEXT   NOT NULL,
    choices     TEXT   NOT NULL,
    grp         TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    -- `pending`, `verified` or `rejected` (a conflict is computed, not stored).
    review      TEXT   NOT NULL DEFAULT 'pending',
    -- Why it was rejected (shown to the parent with the receipt).
    review_reason TEXT,
    reviewed_by TEXT,
    reviewed_at BIGINT,
    PRIMARY KEY (draw_id, app)
);
INSERT INTO draw_applications_reviewed
    (draw_id, app, child_key, sealed, choices, grp, created_at, updated_at, review)
SELECT draw_id, app, child_key, sealed, choices, grp, created_at, updated_at,
       -- Applications of draws already closed were accepted without a review: they count.
       CASE WHEN draw_id IN (SELECT id FROM draws WHERE state NOT IN ('draft', 'open'))
            THEN 'verified' ELSE 'pending' END
FROM draw_applications;
DROP TABLE draw_applications;
ALTER TABLE draw_applications_reviewed RENAME TO draw_applications;
CREATE INDEX draw_applications_child ON draw_applications(draw_id, child_key);
