"""Numbered schema migrations keyed on ``PRAGMA user_version``.

Migration N brings a database from version N-1 to N. Never edit a released migration;
append a new one.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the seed's tables plus what the sync, resolver and publisher flows need.
    """
    CREATE TABLE nostr_events (
        seq          INTEGER PRIMARY KEY,
        id           TEXT    NOT NULL UNIQUE,
        pubkey       TEXT    NOT NULL,
        kind         INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        d_tag        TEXT,                      -- addressable events only
        raw_event    TEXT    NOT NULL,          -- the whole event, compact JSON
        received_at  INTEGER NOT NULL,
        source       TEXT    NOT NULL,          -- 'local', 'import' or the relay URL
        expires_at   INTEGER,                   -- NIP-40
        current      INTEGER NOT NULL DEFAULT 1 -- 0 once superseded by a newer version
    );
    -- Covers "is a current version of this address stored?" without touching the table.
    CREATE INDEX nostr_events_address ON nostr_events (kind, pubkey, d_tag, current);
    CREATE INDEX nostr_events_created ON nostr_events (created_at);
    CREATE INDEX nostr_events_kind_created ON nostr_events (kind, created_at);
    CREATE INDEX nostr_events_author_created ON nostr_events (pubkey, created_at);
    CREATE INDEX nostr_events_expiring ON nostr_events (expires_at) WHERE expires_at IS NOT NULL;

    -- Every tag, every element: 'extra' holds elements beyond the second as a JSON array.
    CREATE TABLE event_tags (
        event_seq INTEGER NOT NULL REFERENCES nostr_events (seq) ON DELETE CASCADE,
        position  INTEGER NOT NULL,
        name      TEXT    NOT NULL,
        value     TEXT,
        extra     TEXT,
        PRIMARY KEY (event_seq, position)
    ) WITHOUT ROWID;
    -- NIP-01 filters only ever query single-letter tags (#e, #d, #t, …): index just those.
    CREATE INDEX event_tags_name_value ON event_tags (name, value) WHERE length(name) = 1;

    CREATE TABLE processing_warnings (
        event_seq INTEGER NOT NULL REFERENCES nostr_events (seq) ON DELETE CASCADE,
        position  INTEGER NOT NULL,
        message   TEXT    NOT NULL,
        PRIMARY KEY (event_seq, position)
    ) WITHOUT ROWID;

    CREATE TABLE exercise_definitions (
        event_seq    INTEGER PRIMARY KEY REFERENCES nostr_events (seq) ON DELETE CASCADE,
        coordinate   TEXT    NOT NULL UNIQUE,
        pubkey       TEXT    NOT NULL,
        title        TEXT    NOT NULL,
        equipment    TEXT,
        difficulty   TEXT,
        format       TEXT    NOT NULL,          -- JSON array
        format_units TEXT    NOT NULL,          -- JSON array
        hashtags     TEXT    NOT NULL,          -- JSON array
        content      TEXT    NOT NULL,
        created_at   INTEGER NOT NULL
    );
    CREATE INDEX exercise_definitions_author ON exercise_definitions (pubkey, title);
    CREATE INDEX exercise_definitions_equipment ON exercise_definitions (equipment);

    CREATE TABLE exercise_media (
        exercise_coordinate TEXT    NOT NULL,
        url                 TEXT    NOT NULL,
        media_type          TEXT,
        sha256              TEXT,
        dim                 TEXT,
        alt                 TEXT,
        content             BLOB,
        thumbnail           BLOB,
        state               TEXT    NOT NULL DEFAULT 'pending',
        last_error          TEXT,
        attempts            INTEGER NOT NULL DEFAULT 0,
        next_attempt        INTEGER NOT NULL DEFAULT 0,
        created_at          INTEGER NOT NULL,
        PRIMARY KEY (exercise_coordinate, url)
    );

    CREATE TABLE cache_metadata (
        content_id    TEXT PRIMARY KEY,
        content_type  TEXT    NOT NULL,
        last_accessed INTEGER NOT NULL,
        access_count  INTEGER NOT NULL DEFAULT 0,
        priority      INTEGER NOT NULL DEFAULT 0
    );

    CREATE TABLE templates (
        event_seq           INTEGER PRIMARY KEY REFERENCES nostr_events (seq) ON DELETE CASCADE,
        coordinate          TEXT    NOT NULL UNIQUE,
        pubkey              TEXT    NOT NULL,
        title               TEXT    NOT NULL,
        type                TEXT,
        rounds              INTEGER,
        duration            INTEGER,
        interval            INTEGER,
        rest_between_rounds INTEGER,
        hashtags            TEXT    NOT NULL,
        content             TEXT    NOT NULL,
        created_at          INTEGER NOT NULL
    );
    CREATE INDEX templates_author ON templates (pubkey, title);

    -- Coordinates named by references, stored once: set rows and dependency rows carry
    -- a small integer instead of a 110-character string (and so do their indexes).
    CREATE TABLE coordinates (
        id         INTEGER PRIMARY KEY,
        coordinate TEXT    NOT NULL UNIQUE,
        kind       INTEGER NOT NULL,
        pubkey     TEXT    NOT NULL,
        d_tag      TEXT    NOT NULL
    );

    CREATE TABLE template_exercises (
        template_seq  INTEGER NOT NULL REFERENCES templates (event_seq) ON DELETE CASCADE,
        position      INTEGER NOT NULL,
        coordinate_id INTEGER NOT NULL REFERENCES coordinates (id),
        relay_hint    TEXT,
        params        TEXT    NOT NULL,          -- JSON array, as in the tag
        PRIMARY KEY (template_seq, position)
    ) WITHOUT ROWID;

    CREATE TABLE workout_records (
        event_seq           INTEGER PRIMARY KEY REFERENCES nostr_events (seq) ON DELETE CASCADE,
        event_id            TEXT    NOT NULL UNIQUE,
        pubkey              TEXT    NOT NULL,
        kind                INTEGER NOT NULL,
        title               TEXT    NOT NULL,
        type                TEXT,
        start               INTEGER,
        "end"               INTEGER,
        completed           INTEGER,
        rounds_completed    INTEGER,
        interval            INTEGER,
        template_coordinate TEXT,
        template_relay      TEXT,
        prs                 TEXT    NOT NULL,   -- JSON array of raw pr values
        hashtags            TEXT    NOT NULL,
        content             TEXT    NOT NULL,
        created_at          INTEGER NOT NULL
    );
    CREATE INDEX workout_records_author_start ON workout_records (pubkey, start);

    CREATE TABLE record_sets (
        record_seq    INTEGER NOT NULL REFERENCES workout_records (event_seq) ON DELETE CASCADE,
        position      INTEGER NOT NULL,
        coordinate_id INTEGER NOT NULL REFERENCES coordinates (id),
        relay_hint    TEXT,
        params        TEXT    NOT NULL,
        PRIMARY KEY (record_seq, position)
    ) WITHOUT ROWID;
    CREATE INDEX record_sets_coordinate ON record_sets (coordinate_id);

    -- What each template/record needs; re-resolution looks dependents up by coordinate.
    CREATE TABLE dependency_refs (
        dependent_seq INTEGER NOT NULL REFERENCES nostr_events (seq) ON DELETE CASCADE,
        coordinate_id INTEGER NOT NULL REFERENCES coordinates (id),
        relay_hint    TEXT,
        PRIMARY KEY (dependent_seq, coordinate_id)
    ) WITHOUT ROWID;
    CREATE INDEX dependency_refs_coordinate ON dependency_refs (coordinate_id);
    CREATE VIEW dependencies AS
        SELECT r.dependent_seq, c.coordinate, r.relay_hint, c.kind, c.pubkey, c.d_tag, c.id
        FROM dependency_refs r JOIN coordinates c ON c.id = r.coordinate_id;

    CREATE TABLE incomplete_templates (
        template_seq           INTEGER PRIMARY KEY
                               REFERENCES nostr_events (seq) ON DELETE CASCADE,
        kind                   INTEGER NOT NULL,
        missing_exercise_count INTEGER NOT NULL,
        missing_exercises      TEXT    NOT NULL  -- JSON array of coordinates
    );

    CREATE TABLE fetch_queue (
        coordinate   TEXT PRIMARY KEY,
        kind         INTEGER NOT NULL,
        pubkey       TEXT    NOT NULL,
        d_tag        TEXT    NOT NULL,
        relay_hints  TEXT    NOT NULL DEFAULT '[]',
        state        TEXT    NOT NULL DEFAULT 'pending',  -- pending | in_flight | not_found
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_attempt INTEGER,
        next_attempt INTEGER NOT NULL DEFAULT 0,
        last_error   TEXT,
        added_at     INTEGER NOT NULL
    );
    CREATE INDEX fetch_queue_due ON fetch_queue (state, next_attempt);

    CREATE TABLE outbox (
        event_id   TEXT PRIMARY KEY,
        queued_at  INTEGER NOT NULL,
        done       INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE outbox_delivery (
        event_id     TEXT    NOT NULL REFERENCES outbox (event_id) ON DELETE CASCADE,
        relay_url    TEXT    NOT NULL,
        state        TEXT    NOT NULL DEFAULT 'pending',
        reason       TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0,
        last_attempt INTEGER,
        next_attempt INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (event_id, relay_url)
    ) WITHOUT ROWID;
    CREATE INDEX outbox_delivery_due ON outbox_delivery (state, next_attempt);

    CREATE TABLE sync_checkpoints (
        relay_url  TEXT NOT NULL,
        scope      TEXT NOT NULL,                -- which subscription the checkpoint covers
        since      INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (relay_url, scope)
    ) WITHOUT ROWID;

    -- NIP-09: 'e' targets are event ids, 'a' targets coordinates (all versions up to
    -- deleted_until). 'pubkey' is the deletion's author: it only binds that author's events.
    CREATE TABLE tombstones (
        target        TEXT    NOT NULL,
        pubkey        TEXT    NOT NULL,
        target_type   TEXT    NOT NULL,
        deleted_until INTEGER NOT NULL,
        deletion_id   TEXT    NOT NULL,
        PRIMARY KEY (target, pubkey)
    ) WITHOUT ROWID;

    CREATE TABLE rejected_events (
        seq         INTEGER PRIMARY KEY,
        event_id    TEXT,
        source      TEXT    NOT NULL,
        reason      TEXT    NOT NULL,
        received_at INTEGER NOT NULL
    );
    """,
    # 2: what the media task needs to verify, budget and evict downloads.
    """
    ALTER TABLE exercise_media ADD COLUMN content_type TEXT;      -- as the server sent it
    ALTER TABLE exercise_media ADD COLUMN content_size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE exercise_media ADD COLUMN thumbnail_type TEXT;
    ALTER TABLE exercise_media ADD COLUMN thumbnail_size INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE exercise_media ADD COLUMN fetched_at INTEGER;
    -- The tag's "m" and "x" a final state was reached with: when the exercise's new
    -- version changes them, the media is due again.
    ALTER TABLE exercise_media ADD COLUMN settled_for TEXT;
    CREATE INDEX exercise_media_due ON exercise_media (state, next_attempt);
    """,
    # 3: what the apps' dialects carry (run `powrd reindex` to fill it for older events).
    """
    ALTER TABLE exercise_media ADD COLUMN extra TEXT NOT NULL DEFAULT '{}'; -- other imeta keys
    ALTER TABLE templates ADD COLUMN unreadable TEXT NOT NULL DEFAULT '[]'; -- [[tag], warning]
    ALTER TABLE workout_records ADD COLUMN activity TEXT;                  -- cardio only
    ALTER TABLE workout_records ADD COLUMN metrics TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE workout_records ADD COLUMN unreadable TEXT NOT NULL DEFAULT '[]';

    -- POWR lists (NIP-51 kind 30003): saved exercises and templates, followed lists.
    CREATE TABLE collections (
        event_seq  INTEGER PRIMARY KEY REFERENCES nostr_events (seq) ON DELETE CASCADE,
        coordinate TEXT    NOT NULL UNIQUE,
        pubkey     TEXT    NOT NULL,
        d_tag      TEXT    NOT NULL,
        title      TEXT    NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX collections_author ON collections (pubkey, d_tag);
    CREATE TABLE collection_members (
        collection_seq INTEGER NOT NULL REFERENCES collections (event_seq) ON DELETE CASCADE,
        position       INTEGER NOT NULL,
        coordinate_id  INTEGER NOT NULL REFERENCES coordinates (id),
        relay_hint     TEXT,
        PRIMARY KEY (collection_seq, position)
    ) WITHOUT ROWID;
    """,
    # 4: negentropy reads (created_at, id) of a filter's current events from this index
    # alone (the rowid in it serves tag filters), never the rows with their raw events.
    """
    CREATE INDEX nostr_events_negentropy
        ON nostr_events (kind, pubkey, created_at, id) WHERE current = 1;
    """,
    # 5: event_tags keeps only what NIP-01 filters query, the single-letter tags' first
    # value (names and values of every other tag are in raw_event): 11 rows an event
    # were a quarter of the store. Space freed here is reused by later writes.
    """
    DELETE FROM event_tags WHERE length(name) <> 1;
    UPDATE event_tags SET extra = NULL WHERE extra IS NOT NULL;
    -- No query reads sets by coordinate, and coordinates are never deleted (so no
    -- foreign-key check needs it); no query reads records by author and start.
    DROP INDEX record_sets_coordinate;
    DROP INDEX workout_records_author_start;
    """,
    # 6: workout_records.event_id loses its UNIQUE index: nostr_events.id already keeps
    # ids unique, no query looks a record up by it, and in a big store each new record
    # wrote a random page of that index (with the WAL, twice). Foreign keys are off while
    # migrations run (see migrate), so dropping the old table cascades nowhere.
    """
    CREATE TABLE workout_records_v6 (
        event_seq           INTEGER PRIMARY KEY REFERENCES nostr_events (seq) ON DELETE CASCADE,
        event_id            TEXT    NOT NULL,
        pubkey              TEXT    NOT NULL,
        kind                INTEGER NOT NULL,
        title               TEXT    NOT NULL,
        type                TEXT,
        start               INTEGER,
        "end"               INTEGER,
        completed           INTEGER,
        rounds_completed    INTEGER,
        interval            INTEGER,
        template_coordinate TEXT,
        template_relay      TEXT,
        prs                 TEXT    NOT NULL,   -- JSON array of raw pr values
        hashtags            TEXT    NOT NULL,
        content             TEXT    NOT NULL,
        created_at          INTEGER NOT NULL,
        activity            TEXT,
        metrics             TEXT    NOT NULL DEFAULT '{}',
        unreadable          TEXT    NOT NULL DEFAULT '[]'
    );
    INSERT INTO workout_records_v6 (
        event_seq, event_id, pubkey, kind, title, type, start, "end", completed,
        rounds_completed, interval, template_coordinate, template_relay, prs, hashtags,
        content, created_at, activity, metrics, unreadable
    )
    SELECT
        event_seq, event_id, pubkey, kind, title, type, start, "end", completed,
        rounds_completed, interval, template_coordinate, template_relay, prs, hashtags,
        content, created_at, activity, metrics, unreadable
    FROM workout_records;
    DROP TABLE workout_records;
    ALTER TABLE workout_records_v6 RENAME TO workout_records;
    """,
    # 7: the figures ``status`` reports are kept by triggers as rows change, instead of
    # counted by scanning (a quarter of a second at a million events, and stale at once
    # during an ingest). ``current_events`` is per kind, current versions only.
    """
    CREATE TABLE row_counts (
        name TEXT    PRIMARY KEY,
        n    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE current_events (
        kind INTEGER PRIMARY KEY,
        n    INTEGER NOT NULL
    );
    INSERT INTO row_counts (name, n)
        SELECT 'nostr_events', count(*) FROM nostr_events
        UNION ALL SELECT 'exercise_definitions', count(*) FROM exercise_definitions
        UNION ALL SELECT 'templates', count(*) FROM templates
        UNION ALL SELECT 'workout_records', count(*) FROM workout_records
        UNION ALL SELECT 'incomplete_templates', count(*) FROM incomplete_templates;
    INSERT INTO current_events (kind, n)
        SELECT kind, count(*) FROM nostr_events WHERE current = 1 GROUP BY kind;

    CREATE TRIGGER nostr_events_counted_in AFTER INSERT ON nostr_events BEGIN
        UPDATE row_counts SET n = n + 1 WHERE name = 'nostr_events';
        INSERT INTO current_events (kind, n) VALUES (NEW.kind, NEW.current)
            ON CONFLICT (kind) DO UPDATE SET n = n + NEW.current;
    END;
    CREATE TRIGGER nostr_events_counted_out AFTER DELETE ON nostr_events BEGIN
        UPDATE row_counts SET n = n - 1 WHERE name = 'nostr_events';
        UPDATE current_events SET n = n - OLD.current WHERE kind = OLD.kind;
    END;
    CREATE TRIGGER nostr_events_counted_current AFTER UPDATE OF current ON nostr_events
        WHEN OLD.current IS NOT NEW.current BEGIN
        UPDATE current_events SET n = n - OLD.current WHERE kind = OLD.kind;
        INSERT INTO current_events (kind, n) VALUES (NEW.kind, NEW.current)
            ON CONFLICT (kind) DO UPDATE SET n = n + NEW.current;
    END;
    CREATE TRIGGER exercise_definitions_counted_in AFTER INSERT ON exercise_definitions
        BEGIN UPDATE row_counts SET n = n + 1 WHERE name = 'exercise_definitions'; END;
    CREATE TRIGGER exercise_definitions_counted_out AFTER DELETE ON exercise_definitions
        BEGIN UPDATE row_counts SET n = n - 1 WHERE name = 'exercise_definitions'; END;
    CREATE TRIGGER templates_counted_in AFTER INSERT ON templates
        BEGIN UPDATE row_counts SET n = n + 1 WHERE name = 'templates'; END;
    CREATE TRIGGER templates_counted_out AFTER DELETE ON templates
        BEGIN UPDATE row_counts SET n = n - 1 WHERE name = 'templates'; END;
    CREATE TRIGGER workout_records_counted_in AFTER INSERT ON workout_records
        BEGIN UPDATE row_counts SET n = n + 1 WHERE name = 'workout_records'; END;
    CREATE TRIGGER workout_records_counted_out AFTER DELETE ON workout_records
        BEGIN UPDATE row_counts SET n = n - 1 WHERE name = 'workout_records'; END;
    CREATE TRIGGER incomplete_templates_counted_in AFTER INSERT ON incomplete_templates
        BEGIN UPDATE row_counts SET n = n + 1 WHERE name = 'incomplete_templates'; END;
    CREATE TRIGGER incomplete_templates_counted_out AFTER DELETE ON incomplete_templates
        BEGIN UPDATE row_counts SET n = n - 1 WHERE name = 'incomplete_templates'; END;
    """,
)

LATEST_VERSION = len(MIGRATIONS)
