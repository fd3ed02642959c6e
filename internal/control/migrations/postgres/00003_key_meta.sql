-- +goose Up
-- A key's name and expiry are set when it is made; last_used_at is
-- written in batches (Plane.RunKeyUse), never once per request.
ALTER TABLE control_api_keys ADD COLUMN name text NOT NULL DEFAULT '';
ALTER TABLE control_api_keys ADD COLUMN expires_at timestamptz;
ALTER TABLE control_api_keys ADD COLUMN last_used_at timestamptz;

-- +goose Down
ALTER TABLE control_api_keys DROP COLUMN last_used_at;
ALTER TABLE control_api_keys DROP COLUMN expires_at;
ALTER TABLE control_api_keys DROP COLUMN name;
