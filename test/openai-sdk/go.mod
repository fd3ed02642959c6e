module github.com/bulkhead-ai/bulkhead/test/openai-sdk

// This empty module keeps node_modules out of the main module's ./... pattern.
