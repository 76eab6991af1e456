"""Unit conversions shared by every module (sizes in µas, angles in radians, u/v in wavelengths)."""
import math

RAD_PER_UAS = math.pi / 180.0 / 3600.0 / 1e6
UAS_PER_RAD = 1.0 / RAD_PER_UAS
