-- A webhook switched off in "stop" mode takes nothing until it is switched on again (in "pause"
-- mode, the default and what an automatic switch-off does, it keeps collecting).
ALTER TABLE webhooks ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;
