-- The sandbox's PersonaPass database: the tables the guides' procedures read and
-- change (seeds/004), with rows spread over time so that every purge, report and
-- review finds something to do.  Deterministic: the same counts at every start,
-- dated relative to now().  Run by sandbox.sh as the database's owner.

CREATE TABLE users (
    id          bigint PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    did         text NOT NULL UNIQUE,
    role        text NOT NULL DEFAULT 'user',
    created_at  timestamptz NOT NULL,
    last_login  timestamptz
);

CREATE TABLE user_sessions (
    id          bigint PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id),
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    ip          inet
);
CREATE INDEX idx_user_sessions_expires_at ON user_sessions (expires_at);

CREATE TABLE audit_logs (
    id          bigint PRIMARY KEY,
    user_id     bigint REFERENCES users(id),
    action      text NOT NULL,
    created_at  timestamptz NOT NULL,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX idx_audit_logs_created_at ON audit_logs (created_at);

CREATE TABLE credentials (
    id          bigint PRIMARY KEY,
    subject_did text NOT NULL,
    issuer      text NOT NULL,
    type        text NOT NULL,
    issued_at   timestamptz NOT NULL,
    revoked     boolean NOT NULL DEFAULT false
);
CREATE INDEX idx_credentials_subject_did ON credentials (subject_did);

CREATE TABLE api_keys (
    api_key_id  text PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id),
    key_hash    text NOT NULL,
    created_at  timestamptz NOT NULL,
    last_used   timestamptz,
    expires_at  timestamptz NOT NULL
);

CREATE TABLE verification_requests (
    id          bigint PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id),
    status      text NOT NULL,
    created_at  timestamptz NOT NULL
);

-- 2,000 users: 1 super_admin, 4 admins; created over two years; every tenth never logged in.
INSERT INTO users
SELECT i, format('user%s@example.com', i), format('did:persona:%s', md5(i::text)),
       CASE WHEN i = 1 THEN 'super_admin' WHEN i <= 5 THEN 'admin' ELSE 'user' END,
       now() - make_interval(days => (i * 7) % 730, hours => i % 24),
       CASE WHEN i % 10 = 0 THEN NULL ELSE now() - make_interval(days => i % 60) END
FROM generate_series(1, 2000) AS i;

-- 10,000 sessions: i % 10 < 3 expired (1,000 of them more than 30 days ago), the rest live.
INSERT INTO user_sessions
SELECT i, 1 + i % 2000, now() - make_interval(days => i % 90 + 1),
       CASE WHEN i % 10 = 0 THEN now() - make_interval(days => 31 + i % 30)
            WHEN i % 10 < 3 THEN now() - make_interval(hours => 1 + i % 200)
            ELSE now() + make_interval(days => 1 + i % 30) END,
       format('10.%s.%s.%s', i % 250, (i / 250) % 250, i % 7)::inet
FROM generate_series(1, 10000) AS i;

-- 30,000 audit rows over 400 days (i % 400 days old): most are past the 90-day
-- retention, about one in eleven past a year.
INSERT INTO audit_logs
SELECT i, 1 + i % 2000,
       (ARRAY['login', 'logout', 'credential.issue', 'credential.verify', 'security.failed_login',
              'api_key.use'])[1 + i % 6],
       now() - make_interval(days => i % 400, mins => i % 1440),
       jsonb_build_object('request_id', md5(i::text))
FROM generate_series(1, 30000) AS i;

-- 5,000 credentials, every 50th revoked.
INSERT INTO credentials
SELECT i, format('did:persona:%s', md5((1 + i % 2000)::text)), 'did:persona:issuer',
       (ARRAY['KYC', 'AgeOver18', 'Email', 'Residency'])[1 + i % 4],
       now() - make_interval(days => i % 500), i % 50 = 0
FROM generate_series(1, 5000) AS i;

-- 300 API keys: every sixth unused for more than 90 days, every tenth expiring within 30 days.
INSERT INTO api_keys
SELECT format('pk_%s', lpad(i::text, 4, '0')), 1 + (i * 7) % 2000, encode(sha256(i::text::bytea), 'hex'),
       now() - make_interval(days => 200 + i % 100),
       CASE WHEN i % 6 = 0 THEN now() - make_interval(days => 91 + i % 60)
            ELSE now() - make_interval(days => i % 30) END,
       CASE WHEN i % 10 = 0 THEN now() + make_interval(days => 1 + i % 29)
            ELSE now() + make_interval(days => 60 + i % 300) END
FROM generate_series(1, 300) AS i;

-- 4,000 verification requests over 200 days; every fourth expired.
INSERT INTO verification_requests
SELECT i, 1 + i % 2000, CASE WHEN i % 4 = 0 THEN 'expired' WHEN i % 4 = 1 THEN 'pending' ELSE 'verified' END,
       now() - make_interval(days => i % 200)
FROM generate_series(1, 4000) AS i;

ANALYZE;
