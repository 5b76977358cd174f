//go:build !linux || !cgo

package main

import "time"

// timerSlack reports 0: timer slack is a Linux setting.
func timerSlack() (time.Duration, error) { return 0, nil }
