//go:build !linux

package main

import "errors"

func startSFRelay(string) (string, func(), error) {
	return "", nil, errors.New("the splice store-and-forward relay needs Linux")
}
