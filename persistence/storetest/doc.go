// Package storetest is the conformance suite for persistence.Store
// implementations. An implementation's test calls Run with a function that
// opens a fresh, empty store; Run exercises the whole contract documented
// in package persistence (ordering, meta fields, compaction, deletion,
// listing, values, concurrency, buffer ownership, Close, argument checks)
// in subtests, closing every store it opens.
//
// The suite stores "changes" as newline-terminated lines: a chunk holds
// some lines and a snapshot the lines of the chunks it covers, so Content
// can check that compaction keeps a document's content.
package storetest
