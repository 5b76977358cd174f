// Package memory provides an in-memory persistence.Store for unit tests of
// the layers above storage (and for short-lived tools). Nothing is written
// to disk; everything is lost on Close.
//
// The store follows the same contract as the on-disk store in
// persistence/badger (both pass persistence/storetest): byte slices are
// copied in and out, sequence numbers are dense, and arguments are checked
// with persistence.CheckID and persistence.CheckKey.
package memory
