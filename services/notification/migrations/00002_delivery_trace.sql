-- A delivery remembers the trace of the event that asked for it (a W3C traceparent: ids and
-- flags only, no PHI), so the dispatcher's send, seconds or hours later and on any replica,
-- continues that trace. NULL when the event came without one or tracing is off.

-- +goose Up
ALTER TABLE deliveries ADD COLUMN trace_parent text
    CONSTRAINT deliveries_trace_parent_length CHECK (length(trace_parent) <= 128);

-- +goose Down
ALTER TABLE deliveries DROP COLUMN trace_parent;
