"""``sparsert crossmodal``: segment a tumour from a CT and a registered MR with the fusion network."""

from __future__ import annotations

import argparse
import sys
import time

from sparsert.cli.common import add_device_option, add_overwrite_option


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "crossmodal",
        help="tumour segmentation from CT + MR with the scribble-trained fusion network (CmFNet)",
        description="Segments the tumour on the CT grid. The MR is resampled onto the CT through physical space "
        "(the images must be registered, or --transform given); without --mr the CT alone is used, with a warning.",
    )
    parser.add_argument("--ct", required=True, metavar="CT", help="CT image in HU (NRRD, NIfTI, MHA, or a DICOM folder)")
    parser.add_argument("--mr", metavar="MR", help="MR image of the same patient (any intensity scale)")
    parser.add_argument("--transform", metavar="T.tfm",
                        help="transform mapping CT points into the MR's space (ITK file; a registration with the CT fixed)")
    parser.add_argument("--out", required=True, metavar="OUT.seg.nrrd",
                        help="output segmentation (.seg.nrrd, or a labelmap image)")
    parser.add_argument("--model", default="crossmodal", metavar="NAME|PATH",
                        help="registered model name or checkpoint file (default: crossmodal)")
    add_device_option(parser)
    add_overwrite_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from sparsert.crossmodal import TUMOUR, load_model, read_transform, segment_tumour
    from sparsert.errors import InputError
    from sparsert.io.segmentation_io import write_segmentation
    from sparsert.io.volume import read_image

    ct = read_image(args.ct)
    mr = read_image(args.mr) if args.mr else None
    transform = read_transform(args.transform) if args.transform else None
    if transform is not None and mr is None:
        raise InputError("--transform applies to the MR: give --mr too")
    model = load_model(args.model, device=args.device)
    start = time.perf_counter()
    result = segment_tumour(ct, mr, model, transform=transform, ct_name=args.ct, mr_name=args.mr or "MR")
    seconds = time.perf_counter() - start
    for warning in result.warnings:
        print(f"sparsert crossmodal: warning: {warning}", file=sys.stderr)
    write_segmentation(result, args.out, overwrite=args.overwrite)
    volume_cc = result[TUMOUR].mask.sum() * ct.geometry.voxel_volume_mm3 / 1000.0
    print(f"tumour {volume_cc:.1f} cc written to {args.out} ({seconds:.1f} s)")
    return 0
