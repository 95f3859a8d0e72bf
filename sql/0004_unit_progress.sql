-- A unit stays when its tenant is paused or stops selecting its content type (active = false), keeping its
-- checkpoint: resuming within Microsoft's 7 days loses no gap. progress_at is the last time the unit committed
-- anything (a blob or its checkpoint); a unit without progress for several poll intervals is shown as stalled.
ALTER TABLE collector_units ADD COLUMN active boolean NOT NULL DEFAULT true;
ALTER TABLE collector_units ADD COLUMN progress_at timestamptz NOT NULL DEFAULT now();
