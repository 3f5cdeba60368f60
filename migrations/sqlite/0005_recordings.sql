-- Recorded segments of live events: one WebM file per publisher session, in
-- `<recordings dir>/<event_id>/<file_name>`. A row whose ended_at is NULL was still being
-- written (or the process died while it was: the file is then a live-stream WebM).
CREATE TABLE recordings (
    event_id        TEXT   NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    segment         BIGINT NOT NULL,
    file_name       TEXT   NOT NULL,
    codecs          TEXT   NOT NULL,
    started_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    duration_ms     BIGINT NOT NULL DEFAULT 0,
    bytes           BIGINT NOT NULL DEFAULT 0,
    dropped_packets BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, segment)
);
