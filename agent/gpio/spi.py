"""The kernel's SPI interface, /dev/spidevB.D, written directly: no library, no chip-select pin.

An LED chain only listens, so a plain write() is the whole transfer: the kernel clocks the bytes
out at the speed set once with an ioctl. (gpiozero's SPI goes through lgpio or the spidev package,
and claims a chip-select pin the chain does not use.)
"""

from __future__ import annotations

import fcntl
import os
import struct

from agent.errors import HardwareError

# <linux/spi/spidev.h>: _IOW(SPI_IOC_MAGIC 'k', nr, type)
SPI_IOC_WR_MODE = 0x40016B01           # nr 1, __u8: clock polarity and phase
SPI_IOC_WR_MAX_SPEED_HZ = 0x40046B04   # nr 4, __u32
MAX_TRANSFER = 4096                    # spidev's default bufsiz: one write may not be longer
ENABLE_SPI = ("turn SPI on (dtparam=spi=on in /boot/firmware/config.txt, or raspi-config > "
              "Interface Options > SPI) and reboot")


class SpiDev:
    """One SPI device file opened for writing, in mode 0 at speed_hz."""

    def __init__(self, path: str, speed_hz: int):
        self.path = path
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise HardwareError(f"{path} does not exist: {ENABLE_SPI}") from None
        except PermissionError:
            raise HardwareError(f"no permission to open {path}: run as a user in the spi group "
                                "(the service's user is)") from None
        except OSError as e:
            raise HardwareError(f"cannot open {path} ({e.strerror or e})") from None
        try:
            fcntl.ioctl(self._fd, SPI_IOC_WR_MODE, struct.pack("=B", 0))
            fcntl.ioctl(self._fd, SPI_IOC_WR_MAX_SPEED_HZ, struct.pack("=I", speed_hz))
        except OSError as e:
            self.close()
            raise HardwareError(f"{path} is not an SPI device ({e.strerror or e}); check "
                                "[leds] spi_bus and spi_device against ls /dev/spidev*") from None

    def write(self, data: bytes) -> None:
        """Clock the bytes out (one transfer of at most MAX_TRANSFER bytes); OSError if it fails."""
        if self._fd is None:
            raise OSError(f"{self.path} is closed")
        os.write(self._fd, data)

    def close(self) -> None:
        """Close the device file; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
