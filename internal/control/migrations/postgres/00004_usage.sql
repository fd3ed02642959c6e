-- +goose Up
-- What each tenant's end users used and spent, per UTC day and model. Like
-- the other control_* tables it is operator data without RLS: the operator
-- reads every tenant's, and a tenant's reads go through Plane.Usage, whose
-- queries always name the tenant. Rows are added to in batches
-- (Plane.RunUsage), never once per request, and go with their tenant.
CREATE TABLE control_usage (
    tenant_id           text NOT NULL REFERENCES control_tenants(id) ON DELETE CASCADE,
    day                 date NOT NULL, -- UTC
    end_user            text NOT NULL, -- '' when the request named none
    model               text NOT NULL, -- "<provider>/<model>"
    requests            bigint NOT NULL,
    input_tokens        bigint NOT NULL,
    cached_input_tokens bigint NOT NULL,
    output_tokens       bigint NOT NULL,
    spend_micro_usd     bigint NOT NULL,
    PRIMARY KEY (tenant_id, day, end_user, model)
);

-- +goose Down
DROP TABLE control_usage;
