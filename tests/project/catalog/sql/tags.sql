-- Loaded first: the fixture and the callable loader build on these rows.
INSERT INTO catalog_tag (name) VALUES ('fiction');
INSERT INTO catalog_tag (name) VALUES ('poetry');
