RESET search_path;
