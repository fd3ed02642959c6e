module github.com/bulkhead-ai/bulkhead/test/browser

// This empty module keeps node_modules out of the main module's ./... pattern.
