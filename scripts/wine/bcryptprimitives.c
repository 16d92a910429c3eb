/*
 * Wine 8.0 (Debian 12) has no bcryptprimitives.dll, which every Rust >= 1.78 Windows binary
 * imports for ProcessPrng (std's random seeds for HashMap). Without it the loader refuses the
 * test binary: "Library bcryptprimitives.dll ... not found", status c0000135, exit code 53.
 * This stand-in, built with mingw and put next to the test binaries, forwards ProcessPrng to
 * RtlGenRandom (advapi32's SystemFunction036), which Wine has. Test machinery only: it never
 * ships with the crate.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
