-- Live events (interviews, enforcement livestreams, draw ceremonies) and the record of
-- what happened in them: chat, questions and answers, moderation, viewer counts.
CREATE TABLE events (
    id                  TEXT    PRIMARY KEY,
    kind                TEXT    NOT NULL,
    title               TEXT    NOT NULL,
    topic               TEXT    NOT NULL,
    summary             TEXT    NOT NULL,
    scheduled_start     BIGINT  NOT NULL,
    scheduled_end       BIGINT  NOT NULL,
    form                TEXT    NOT NULL,
    visibility          TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    follow_publisher    BIGINT  NOT NULL DEFAULT 0,
    started_at          BIGINT,
    ended_at            BIGINT,
    publish_token_hash  TEXT,
    created_by          TEXT    NOT NULL,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL
);
CREATE INDEX events_status ON events(status, scheduled_start);

CREATE TABLE event_guests (
    event_id     TEXT   NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    position     BIGINT NOT NULL,
    name         TEXT   NOT NULL,
    title        TEXT   NOT NULL,
    organisation TEXT   NOT NULL,
    PRIMARY KEY (event_id, position)
);

CREATE TABLE event_staff (
    event_id TEXT   NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    user_id  BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role     TEXT   NOT NULL,
    PRIMARY KEY (event_id, user_id, role)
);

CREATE TABLE chat_messages (
    event_id   TEXT   NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    id         TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    viewer_id  TEXT   NOT NULL,
    nickname   TEXT   NOT NULL,
    body       TEXT   NOT NULL,
    staff      BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT,
    deleted_by TEXT,
    PRIMARY KEY (event_id, id)
);
CREATE INDEX chat_messages_seq ON chat_messages(event_id, seq);

CREATE TABLE questions (
    event_id      TEXT   NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    id            TEXT   NOT NULL,
    seq           BIGINT NOT NULL,
    viewer_id     TEXT   NOT NULL,
    nickname      TEXT   NOT NULL,
    body          TEXT   NOT NULL,
    votes         BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    answer        TEXT,
    answered_by   TEXT,
    answered_at   BIGINT,
    answered_live BIGINT NOT NULL DEFAULT 0,
    deleted_at    BIGINT,
    PRIMARY KEY (event_id, id)
);

CREATE TABLE question_votes (
    event_id    TEXT NOT NULL,
    question_id TEXT NOT NULL,
    viewer_id   TEXT NOT NULL,
    PRIMARY KEY (event_id, question_id, viewer_id)
);

CREATE TABLE moderation_actions (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT   NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    at       BIGINT NOT NULL,
    actor    TEXT   NOT NULL,
    action   TEXT   NOT NULL,
    detail   TEXT   NOT NULL
);

CREATE TABLE bans (
    event_id   TEXT   NOT NULL,
    viewer_id  TEXT   NOT NULL,
    ip         TEXT,
    until      BIGINT NOT NULL,
    created_by TEXT   NOT NULL,
    PRIMARY KEY (event_id, viewer_id)
);

CREATE TABLE viewer_samples (
    event_id   TEXT   NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    minute     BIGINT NOT NULL,
    current    BIGINT NOT NULL,
    peak       BIGINT NOT NULL,
    cumulative BIGINT NOT NULL,
    PRIMARY KEY (event_id, minute)
);

CREATE TABLE event_likes (
    event_id TEXT   PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    total    BIGINT NOT NULL
);
