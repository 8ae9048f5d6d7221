/*
 * bcryptprimitives.dll for wine prefixes that lack ProcessPrng (wine 8.0).
 * The Go runtime on Windows draws its random bytes from ProcessPrng and
 * refuses to start without it. This stand-in forwards to BCryptGenRandom.
 * Only for running the Windows test binaries under wine (contrib/windows/test.sh);
 * it is never shipped.
 */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
	while (len > 0) {
		ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
		if (BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
			return FALSE;
		data += n;
		len -= n;
	}
	return TRUE;
}
