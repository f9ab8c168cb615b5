-- AlterTable
ALTER TABLE "verification_requests" ADD COLUMN "reviewed_at" TIMESTAMPTZ;

-- Backfill: a verified request was reviewed when it was made.
UPDATE "verification_requests" SET "reviewed_at" = "created_at" WHERE "status" = 'verified';

-- The schema change is itself audited: one row per migration, so a second run would show.
INSERT INTO "audit_logs" ("id", "user_id", "action", "created_at", "details")
SELECT COALESCE(MAX("id"), 0) + 1, NULL, 'schema.migration', now(),
       '{"migration": "20260102090000_verification_reviewed_at"}'::jsonb
  FROM "audit_logs";
