-- +goose Up
-- What each tenant's end users used and spent, per UTC day and model. Rows
-- are added to in batches (Plane.RunUsage), never once per request, and go
-- with their tenant.
CREATE TABLE usage (
    tenant_id           TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    day                 TEXT NOT NULL, -- YYYY-MM-DD, UTC
    end_user            TEXT NOT NULL, -- '' when the request named none
    model               TEXT NOT NULL, -- "<provider>/<model>"
    requests            INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    spend_micro_usd     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day, end_user, model)
);

-- +goose Down
DROP TABLE usage;
