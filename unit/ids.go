package unit

import (
	"fmt"
	"strconv"
)

// MaxID is the largest user or group id a unit may name. 4294967295 is
// (uid_t)-1, which the kernel reads as "leave unchanged", and a larger
// number would wrap around to a small id such as 0.
const MaxID = 1<<32 - 2

// ParseID parses a user or group id written as a number. It returns
// numeric == false for a name (s is not a number), and an error for a
// number that is not a valid id: negative, or above MaxID.
func ParseID(s string) (id uint32, numeric bool, err error) {
	digits := s
	if len(digits) > 0 && (digits[0] == '-' || digits[0] == '+') {
		digits = digits[1:]
	}
	if digits == "" {
		return 0, false, nil
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false, nil
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > MaxID {
		return 0, true, fmt.Errorf("%s is not a valid id (ids are 0 to %d)", s, MaxID)
	}
	return uint32(n), true, nil
}
