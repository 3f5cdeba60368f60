-- The hub's per-event room state that outlives a room process: the last broadcast seq
-- (so seq continues after a restart), chat settings and the viewer-count high marks.
CREATE TABLE event_rooms (
    event_id           TEXT   PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    last_seq           BIGINT NOT NULL DEFAULT 0,
    chat_open          BIGINT NOT NULL DEFAULT 1,
    slow_mode_secs     BIGINT NOT NULL DEFAULT 0,
    peak_viewers       BIGINT NOT NULL DEFAULT 0,
    cumulative_viewers BIGINT NOT NULL DEFAULT 0
);

-- Which staff role wrote a chat message (`moderator`, `admin`, `broadcaster`), for the
-- record's badges; NULL for viewers.
ALTER TABLE chat_messages ADD COLUMN staff_role TEXT;

CREATE INDEX questions_by_seq ON questions(event_id, seq);
CREATE INDEX moderation_actions_event ON moderation_actions(event_id, at);
