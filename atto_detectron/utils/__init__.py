"""Small helpers shared by the other subpackages (as detectron2.utils): they import none of them."""
