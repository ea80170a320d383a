package bzip2

var crcTable = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 24
		for j := 0; j < 8; j++ {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04c11db7
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// updateCRC adds n copies of b to crc (an unfinalised bzip2 CRC).
func updateCRC(crc uint32, b byte, n int) uint32 {
	for ; n > 0; n-- {
		crc = crc<<8 ^ crcTable[byte(crc>>24)^b]
	}
	return crc
}
