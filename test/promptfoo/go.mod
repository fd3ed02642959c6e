module github.com/bulkhead-ai/bulkhead/test/promptfoo

// This empty module keeps node_modules out of the main module's ./... pattern.
