#!/usr/bin/env python3
"""Reads NVIDIA's GTC24 S62129 slide 35 ("NCCL Allreduce BusBW, ALGO=NVLSTree, 32 to 8K
GPUs") off its image and prints bus bandwidth per GPU count and size.

The image is not kept here. A copy sits in the public repository stas00/ml-engineering at
commit 744d01e18b79512572f64a6bbd8b5f4a725203a7, path
network/images/nccl-all-reduce-scan-nvlstree.png (1024 x 824 pixels).

Usage: python3 gtc24_nvlstree.py IMAGE.png        (needs Pillow)

How it reads: the y axis runs from 0 GB/s at pixel row 723 to 400 GB/s at row 87 (the
chart's gridlines, found at rows 87, 166, 246, 325, 404, 485, 563, 644, 723); the 20 size
ticks (32K ... 16G, powers of two) are evenly spaced from column 62 to column 909 (where the
8,192-GPU line starts and ends). Each series is the legend swatch's colour; at a tick the
value is the median row of that colour's pixels in the tick's column and its two
neighbours. A '-' means the line is hidden under another there. A line is about 3 pixels
wide, about 2 GB/s.
"""
import sys
from PIL import Image

SERIES = {32: (0, 19, 87), 64: (0, 106, 190), 128: (0, 170, 238), 256: (0, 173, 73),
          512: (146, 208, 81), 1024: (255, 255, 0), 2048: (255, 188, 0),
          4096: (255, 0, 0), 8192: (191, 0, 0)}
SIZES = ['32K', '64K', '128K', '256K', '512K', '1M', '2M', '4M', '8M', '16M', '32M', '64M',
         '128M', '256M', '512M', '1G', '2G', '4G', '8G', '16G']
Y0, Y400, X0, X1 = 723, 87, 62, 909


def main(path):
    im = Image.open(path).convert('RGB')
    w, _ = im.size
    px = im.load()

    def dist(a, b):
        return sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5

    print('size  ' + ''.join(f'{n:>7}' for n in SERIES))
    for i, name in enumerate(SIZES):
        x = round(X0 + (X1 - X0) / (len(SIZES) - 1) * i)
        row = []
        for colour in SERIES.values():
            ys = sorted(y for xx in (x - 1, x, x + 1) if 0 <= xx < w
                        for y in range(Y400 - 7, Y0 + 3) if dist(px[xx, y], colour) < 35)
            row.append(f'{(Y0 - ys[len(ys) // 2]) * 400 / (Y0 - Y400):7.1f}' if ys else '      -')
        print(f'{name:>4}  ' + ''.join(row))


if __name__ == '__main__':
    main(sys.argv[1])
