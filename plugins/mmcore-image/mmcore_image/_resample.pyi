from typing_extensions import Buffer

def resize_window(
    src: Buffer,
    in_h: int,
    in_w: int,
    out_h: int,
    out_w: int,
    filter: str,
    y0: int,
    x0: int,
    h: int,
    w: int,
    dst: Buffer,
    table: Buffer | None = None,
    vertical_first: bool = False,
) -> None: ...
